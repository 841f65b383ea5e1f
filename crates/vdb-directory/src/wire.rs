//! The DNS fast path's wire format (RFC 1035 §4.1, RFC 6891 §6): reading a plain query, and
//! turning an answer prepared for the lowercase question into the reply to one query.
//!
//! Only `std`, no `unsafe`: the fuzz target `dns_query` includes this file as it is.

/// Bytes of a DNS header.
pub const HEADER: usize = 12;

/// Bytes of the OPT record a reply carries when its query had one (root owner, no options).
pub const OPT_LEN: usize = 11;

/// Most bytes of a name in wire format (RFC 1035 §3.1).
pub const MAX_NAME: usize = 255;

/// The smallest reply size limit over UDP (RFC 1035 §4.2.1), and the floor of an EDNS one.
pub const MIN_UDP: usize = 512;

/// Record type OPT.
const OPT: u16 = 41;

/// EDNS option code of Client Subnet (RFC 7871): its answers depend on the option.
const CLIENT_SUBNET: u16 = 8;

/// A query the fast path may answer: a standard query with no odd flags (only RD, AD and CD
/// may be set), one question of class IN whose name is not compressed, no answer or
/// authority records, and at most one additional record, an EDNS version 0 OPT without
/// Client Subnet; nothing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The message ID.
    pub id: u16,
    /// Recursion desired (copied into the reply).
    pub rd: bool,
    /// Checking disabled (copied into the reply).
    pub cd: bool,
    /// Bytes of the question's name in wire format (root label included).
    pub name_len: usize,
    /// The question's type.
    pub qtype: u16,
    /// The requestor's UDP payload size when the query has an OPT record.
    pub edns: Option<u16>,
}

impl Query {
    /// Where the question section ends (it starts at [`HEADER`]).
    pub fn question_end(&self) -> usize {
        HEADER + self.name_len + 4
    }

    /// The largest reply over UDP: 512 bytes, or the requestor's EDNS payload size if larger
    /// (RFC 6891 §6.2.5).
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(MIN_UDP, |p| usize::from(p).max(MIN_UDP))
    }
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    let b = msg.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads `msg` as a query the fast path may answer (see [`Query`]); `None` for anything else,
/// which then takes the general path.
pub fn parse(msg: &[u8]) -> Option<Query> {
    if msg.len() < HEADER {
        return None;
    }
    let (f1, f2) = (msg[2], msg[3]);
    // QR = 0, opcode QUERY, AA = TC = 0 (RD free); RA = Z = 0 and RCODE 0 (AD, CD free).
    if f1 & 0xFE != 0 || f2 & 0xCF != 0 {
        return None;
    }
    let counts = [
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    ];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let mut at = HEADER;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len & 0xC0 != 0 {
            // A compression pointer (or an obsolete label type) in a question: general path.
            return None;
        }
        at += 1 + len;
        if at - HEADER > MAX_NAME {
            return None;
        }
        if len == 0 {
            break;
        }
    }
    let name_len = at - HEADER;
    let qtype = u16_at(msg, at)?;
    if u16_at(msg, at + 2)? != 1 {
        return None;
    }
    at += 4;
    let mut edns = None;
    if counts[3] == 1 {
        // The OPT record: root owner, type 41, class = payload size, TTL = extended RCODE,
        // version, flags; then its options.
        if *msg.get(at)? != 0 || u16_at(msg, at + 1)? != OPT {
            return None;
        }
        let payload = u16_at(msg, at + 3)?;
        let (ext_rcode, version) = (*msg.get(at + 5)?, *msg.get(at + 6)?);
        if ext_rcode != 0 || version != 0 {
            return None;
        }
        let rdlen = usize::from(u16_at(msg, at + 9)?);
        at += OPT_LEN;
        let end = at + rdlen;
        if end > msg.len() {
            return None;
        }
        while at < end {
            let code = u16_at(msg, at)?;
            let len = usize::from(u16_at(msg, at + 2)?);
            at += 4 + len;
            if code == CLIENT_SUBNET || at > end {
                return None;
            }
        }
        edns = Some(payload);
    }
    if at != msg.len() {
        return None;
    }
    Some(Query {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        rd: f1 & 0x01 != 0,
        cd: f2 & 0x10 != 0,
        name_len,
        qtype,
        edns,
    })
}

/// The question's name of `msg` (parsed as `q`) in lowercase wire format, written into `buf`.
pub fn lower_name<'b>(msg: &[u8], q: &Query, buf: &'b mut [u8; MAX_NAME]) -> &'b [u8] {
    let name = &msg[HEADER..HEADER + q.name_len];
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    // Length octets are below 64, never ASCII letters: lowercasing them changes nothing.
    out.make_ascii_lowercase();
    out
}

/// A compression pointer to `offset` (RFC 1035 §4.1.4); `None` past the 14-bit range.
pub fn pointer(offset: usize) -> Option<[u8; 2]> {
    let o = u16::try_from(offset).ok().filter(|o| *o < 0x4000)?;
    Some((0xC000 | o).to_be_bytes())
}

/// Appends one resource record of class IN.
pub fn push_record(out: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let len = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&rdata[..usize::from(len)]);
}

/// The header's count of section `section` (0 question, 1 answer, 2 authority, 3 additional).
pub fn count(msg: &[u8], section: usize) -> u16 {
    u16_at(msg, 4 + 2 * section).unwrap_or(0)
}

/// Adds `n` to the header's count of section `section` (see [`count`]).
pub fn add_count(out: &mut [u8], section: usize, n: u16) {
    let at = 4 + 2 * section;
    if let Some(b) = out.get_mut(at..at + 2) {
        let c = u16::from_be_bytes([b[0], b[1]]).wrapping_add(n);
        b.copy_from_slice(&c.to_be_bytes());
    }
}

/// Makes `out`, an answer prepared for the question of `msg` (parsed as `q`) in lowercase
/// with ID 0 and RD = CD = 0, the reply to `msg`: the query's ID, RD and CD, its question
/// as asked (letter case kept, so that 0x20-randomising resolvers accept it), and an OPT
/// record (version 0, payload size as [`Query::udp_limit`]) when the query had one.
///
/// Returns false, `out` then being of no use, when the prepared question is not the query's
/// or the reply would be longer than `limit` bytes: the general path answers that one (and
/// truncates it with TC over UDP).
pub fn finish(out: &mut Vec<u8>, msg: &[u8], q: &Query, limit: usize) -> bool {
    let end = q.question_end();
    if out.len() < end
        || msg.len() < end
        || !out[HEADER..end].eq_ignore_ascii_case(&msg[HEADER..end])
    {
        return false;
    }
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    out[2] = (out[2] & !0x01) | u8::from(q.rd);
    out[3] = (out[3] & !0x10) | if q.cd { 0x10 } else { 0 };
    out[HEADER..end].copy_from_slice(&msg[HEADER..end]);
    if q.edns.is_some() {
        let payload = u16::try_from(q.udp_limit()).unwrap_or(u16::MAX);
        let p = payload.to_be_bytes();
        out.extend_from_slice(&[0, 0, 41, p[0], p[1], 0, 0, 0, 0, 0, 0]);
        add_count(out, 3, 1);
    }
    out.len() <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted, absolute) of type `qtype` with header bytes `f1`/`f2`
    /// and, when `edns` is given, an OPT record with that payload size and `options`.
    fn query(name: &str, qtype: u16, f1: u8, f2: u8, edns: Option<(u16, &[u8])>) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            f1,
            f2,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        if let Some((payload, options)) = edns {
            let p = payload.to_be_bytes();
            m.extend_from_slice(&[0, 0, 41, p[0], p[1], 0, 0, 0x80, 0]);
            m.extend_from_slice(&(options.len() as u16).to_be_bytes());
            m.extend_from_slice(options);
        }
        m
    }

    /// A prepared answer for `name`/A: header (AA, one answer), the lowercase question, one
    /// A record pointing to the question.
    fn prepared(name: &str) -> Vec<u8> {
        let mut q = query(&name.to_ascii_lowercase(), 1, 0, 0, None);
        q[0] = 0;
        q[1] = 0;
        q[2] = 0x84;
        q[7] = 1;
        push_record(&mut q, &pointer(12).unwrap(), 1, 60, &[192, 0, 2, 1]);
        q
    }

    #[test]
    fn plain_queries_parse_and_odd_ones_do_not() {
        let q = parse(&query("database.vdb.test", 1, 0x01, 0x20, None)).unwrap();
        assert_eq!(
            q,
            Query {
                id: 0x1234,
                rd: true,
                cd: false,
                name_len: 19,
                qtype: 1,
                edns: None
            }
        );
        assert_eq!(q.udp_limit(), 512);
        let q = parse(&query("vdb.test", 6, 0, 0x10, Some((4096, &[])))).unwrap();
        assert!(q.cd && !q.rd);
        assert_eq!((q.edns, q.udp_limit()), (Some(4096), 4096));
        // A COOKIE option is ignored (as the general path does); a small payload counts as 512.
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let q = parse(&query("vdb.test", 6, 0, 0, Some((100, &cookie)))).unwrap();
        assert_eq!(q.udp_limit(), 512);
        // Root name.
        assert_eq!(parse(&query(".", 2, 0, 0, None)).unwrap().name_len, 1);

        let base = query("vdb.test", 1, 0, 0, None);
        let odd = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut m = base.clone();
            edit(&mut m);
            parse(&m)
        };
        assert!(odd(&|_| {}).is_some());
        assert!(odd(&|m| m[2] |= 0x80).is_none(), "a response");
        assert!(odd(&|m| m[2] |= 0x08).is_none(), "opcode 1");
        assert!(odd(&|m| m[2] |= 0x28).is_none(), "NOTIFY");
        assert!(odd(&|m| m[2] |= 0x04).is_none(), "AA");
        assert!(odd(&|m| m[2] |= 0x02).is_none(), "TC");
        assert!(odd(&|m| m[3] |= 0x80).is_none(), "RA");
        assert!(odd(&|m| m[3] |= 0x40).is_none(), "Z");
        assert!(odd(&|m| m[3] |= 0x01).is_none(), "an RCODE");
        assert!(odd(&|m| m[5] = 2).is_none(), "two questions");
        assert!(odd(&|m| m[5] = 0).is_none(), "no question");
        assert!(odd(&|m| m[7] = 1).is_none(), "an answer");
        assert!(odd(&|m| m[9] = 1).is_none(), "an authority record");
        assert!(
            odd(&|m| m[11] = 1).is_none(),
            "an additional record that is missing"
        );
        assert!(odd(&|m| m.push(0)).is_none(), "trailing bytes");
        assert!(odd(&|m| m.truncate(m.len() - 1)).is_none(), "cut short");
        assert!(odd(&|m| m.truncate(14)).is_none(), "cut in the name");
        let class_at = base.len() - 1;
        assert!(odd(&|m| m[class_at] = 3).is_none(), "class CHAOS");
        assert!(odd(&|m| m[class_at] = 255).is_none(), "class ANY");
        assert!(
            odd(&|m| m[12] = 0xC0).is_none(),
            "a pointer in the question"
        );
        assert!(odd(&|m| m[12] = 0x40).is_none(), "an extended label type");
        // Client Subnet, EDNS version 1, an extended RCODE, a broken option, a non-OPT record.
        let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2];
        assert!(parse(&query("vdb.test", 1, 0, 0, Some((1232, &ecs)))).is_none());
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut m = query("vdb.test", 1, 0, 0, Some((1232, &[])));
            edit(&mut m);
            parse(&m)
        };
        assert!(with(&|_| {}).is_some());
        let opt = base.len();
        assert!(with(&|m| m[opt + 6] = 1).is_none(), "EDNS version 1");
        assert!(with(&|m| m[opt + 5] = 1).is_none(), "extended RCODE");
        assert!(with(&|m| m[opt + 2] = 250).is_none(), "TSIG, not OPT");
        assert!(with(&|m| m[opt] = 1).is_none(), "OPT not at the root");
        assert!(
            with(&|m| {
                m[opt + 10] = 4;
                m.extend_from_slice(&[0, 10, 0, 9]);
            })
            .is_none(),
            "an option longer than the record"
        );
        assert!(with(&|m| m[opt + 10] = 1).is_none(), "RDLEN past the end");
        // Names: 255 bytes at most.
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(parse(&query(&long, 1, 0, 0, None)).unwrap().name_len, 255);
        let longer = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert!(parse(&query(&longer, 1, 0, 0, None)).is_none());
        for n in 0..HEADER {
            assert!(parse(&base[..n]).is_none());
        }
    }

    #[test]
    fn replies_take_id_flags_case_and_edns_from_the_query() {
        let msg = query("DataBase.VDB.test", 1, 0x01, 0x30, None);
        let q = parse(&msg).unwrap();
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(
            lower_name(&msg, &q, &mut buf),
            b"\x08database\x03vdb\x04test\x00"
        );
        let mut out = prepared("database.vdb.test");
        assert!(finish(&mut out, &msg, &q, q.udp_limit()));
        assert_eq!(&out[0..2], &[0x12, 0x34], "ID");
        assert_eq!(out[2], 0x85, "QR, AA and RD");
        assert_eq!(out[3], 0x10, "CD kept, AD cleared");
        assert_eq!(
            &out[HEADER..q.question_end()],
            &msg[HEADER..q.question_end()]
        );
        assert_eq!(count(&out, 3), 0, "no OPT without one in the query");
        // RD and CD clear in the query: clear in the reply.
        let msg = query("database.vdb.test", 1, 0, 0, None);
        let q = parse(&msg).unwrap();
        let mut out = prepared("database.vdb.test");
        assert!(finish(&mut out, &msg, &q, 512));
        assert_eq!((out[2], out[3]), (0x84, 0));
        // EDNS: an OPT record with the payload size, version 0, DO clear, no options.
        let msg = query("database.vdb.test", 1, 0, 0, Some((1232, &[])));
        let q = parse(&msg).unwrap();
        let mut out = prepared("database.vdb.test");
        let before = out.len();
        assert!(finish(&mut out, &msg, &q, q.udp_limit()));
        assert_eq!(count(&out, 3), 1);
        assert_eq!(&out[before..], &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        // A small EDNS payload size is answered with 512.
        let msg = query("database.vdb.test", 1, 0, 0, Some((200, &[])));
        let q = parse(&msg).unwrap();
        let mut out = prepared("database.vdb.test");
        assert!(finish(&mut out, &msg, &q, q.udp_limit()));
        assert_eq!(&out[out.len() - 8..out.len() - 6], &[0x02, 0x00]);
    }

    #[test]
    fn too_long_or_another_question_goes_to_the_general_path() {
        let msg = query("database.vdb.test", 1, 0, 0, None);
        let q = parse(&msg).unwrap();
        let mut out = prepared("database.vdb.test");
        for _ in 0..40 {
            push_record(&mut out, &pointer(12).unwrap(), 1, 60, &[192, 0, 2, 1]);
            add_count(&mut out, 1, 1);
        }
        // 35 + 41 * 16 bytes: over 512 without EDNS (truncation is the general path's)...
        assert!(!finish(&mut out.clone(), &msg, &q, q.udp_limit()));
        // ...fine over TCP.
        assert!(finish(&mut out, &msg, &q, usize::from(u16::MAX)));
        assert_eq!(count(&out, 1), 41);
        // Prepared for another name (same length or not): refused.
        let mut other = prepared("databasf.vdb.test");
        assert!(!finish(&mut other, &msg, &q, 512));
        let mut other = prepared("db.vdb.test");
        assert!(!finish(&mut other, &msg, &q, 512));
    }

    #[test]
    fn pointers_and_counts() {
        assert_eq!(pointer(12), Some([0xC0, 12]));
        assert_eq!(pointer(0x3FFF), Some([0xFF, 0xFF]));
        assert_eq!(pointer(0x4000), None);
        let mut h = vec![0u8; HEADER];
        add_count(&mut h, 1, 3);
        add_count(&mut h, 1, 2);
        assert_eq!(count(&h, 1), 5);
        assert_eq!(count(&h[..5], 1), 0);
    }
}
