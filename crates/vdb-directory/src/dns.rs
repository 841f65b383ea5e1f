//! The general path of the authoritative DNS server (hickory-server's request types): every
//! query the fast path ([`crate::fast`]) does not answer, zone transfers and NOTIFY.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::metrics::QueryLabels;
use crate::state::Shared;
use crate::zone::{Lookup, Rng};

/// Records per message of a zone transfer.
const AXFR_CHUNK: usize = 200;

/// The request handler: answers from the current snapshot.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) shared: Arc<Shared>,
}

fn fallback_info(meta: Metadata) -> ResponseInfo {
    Header {
        metadata: meta,
        counts: HeaderCounts::default(),
    }
    .into()
}

impl Handler {
    fn count(&self, qtype: &str, rcode: ResponseCode, proto: Protocol) {
        self.shared
            .metrics
            .queries
            .get_or_create(&QueryLabels {
                qtype: qtype.to_owned(),
                rcode: rcode.to_string(),
                proto: if proto == Protocol::Udp { "udp" } else { "tcp" }.to_owned(),
            })
            .inc();
    }

    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        meta: Metadata,
        [answers, authorities, additionals]: [&[Record]; 3],
        mut handle: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = edns {
            builder.edns(e);
        }
        let msg = builder.build(
            meta,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            additionals.iter(),
        );
        match handle.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send a DNS answer");
                fallback_info(meta)
            }
        }
    }

    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        meta: Metadata,
        mut handle: R,
    ) -> ResponseInfo {
        let snap = self.shared.snapshot();
        // IXFR from a secondary that is already current: just our SOA (RFC 1995 §2).
        // Otherwise (AXFR, or IXFR from an older serial) the whole zone, AXFR-style.
        let client_serial = request.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
        let current = client_serial.is_some_and(|c| {
            let diff = snap.serial.wrapping_sub(c);
            diff == 0 || diff > u32::MAX / 2
        });
        let mut records = if current { Vec::new() } else { snap.records() };
        records.push(snap.soa());
        let mut info = fallback_info(meta);
        for chunk in records.chunks(AXFR_CHUNK) {
            let msg = MessageResponseBuilder::new(&request.queries, None).build(
                meta,
                chunk.iter(),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            match handle.send_response(msg).await {
                Ok(i) => info = i,
                Err(e) => {
                    tracing::debug!(error = %e, "zone transfer aborted");
                    break;
                }
            }
        }
        tracing::info!(peer = %request.src(), serial = snap.serial, records = records.len(), "zone transferred");
        info
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = false;
        meta.authentic_data = false;
        let proto = request.protocol();

        // EDNS: echo an OPT record when the query had one (RFC 6891).
        let mut resp_edns = None;
        let mut subnet: Option<ClientSubnet> = None;
        if let Some(req_edns) = &request.edns {
            let mut e = Edns::new();
            e.set_max_payload(req_edns.max_payload().max(512));
            e.set_version(0);
            if req_edns.version() > 0 {
                meta.response_code = ResponseCode::BADVERS;
                self.count("-", ResponseCode::BADVERS, proto);
                return self
                    .send(request, Some(&e), meta, [&[], &[], &[]], handle)
                    .await;
            }
            if let Some(EdnsOption::Subnet(s)) = req_edns.option(EdnsCode::Subnet) {
                subnet = Some(*s);
            }
            resp_edns = Some(e);
        }

        if request.metadata.message_type != MessageType::Query {
            // Never answer a response: two servers could bounce errors forever.
            return fallback_info(meta);
        }
        if request.metadata.op_code != OpCode::Query {
            meta.response_code = ResponseCode::NotImp;
            self.count("-", meta.response_code, proto);
            return self
                .send(request, resp_edns.as_ref(), meta, [&[], &[], &[]], handle)
                .await;
        }
        let Ok(info) = request.request_info() else {
            meta.response_code = ResponseCode::FormErr;
            self.count("-", meta.response_code, proto);
            return self
                .send(request, resp_edns.as_ref(), meta, [&[], &[], &[]], handle)
                .await;
        };
        if !matches!(
            info.query.query_class(),
            hickory_proto::rr::DNSClass::IN | hickory_proto::rr::DNSClass::ANY
        ) {
            meta.response_code = ResponseCode::Refused;
            self.count("-", meta.response_code, proto);
            return self
                .send(request, resp_edns.as_ref(), meta, [&[], &[], &[]], handle)
                .await;
        }
        let qname: Name = info.query.name().clone().into();
        let qtype = info.query.query_type();
        let qtype_s = qtype_label(qtype);
        let snap = self.shared.snapshot();

        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            let allowed = proto == Protocol::Tcp
                && self
                    .shared
                    .config
                    .axfr_allow
                    .contains(&vdb_service::canonical_ip(request.src().ip()))
                && qname.to_lowercase() == snap.params.origin;
            if !allowed {
                meta.response_code = ResponseCode::Refused;
                self.count(&qtype_s, meta.response_code, proto);
                tracing::debug!(peer = %request.src(), "zone transfer refused");
                return self
                    .send(request, resp_edns.as_ref(), meta, [&[], &[], &[]], handle)
                    .await;
            }
            meta.authoritative = true;
            self.count(&qtype_s, ResponseCode::NoError, proto);
            return self.transfer(request, meta, handle).await;
        }

        // The client's address: EDNS Client Subnet when given, else the packet's source.
        let client_ip = subnet
            .as_ref()
            .map(ClientSubnet::addr)
            .unwrap_or_else(|| request.src().ip());
        let region = self.shared.region_of(vdb_service::canonical_ip(client_ip));
        if let (Some(e), Some(s)) = (resp_edns.as_mut(), subnet.as_ref()) {
            // RFC 7871: echo the option; the scope says how far the answer may be reused.
            let scope = if region.is_some() {
                s.source_prefix()
            } else {
                0
            };
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                s.addr(),
                s.source_prefix(),
                scope,
            )));
        }

        let mut rng = Rng::new();
        let lookup = snap.lookup(&qname, qtype, region.as_deref(), &mut rng);
        let (answers, authorities, additionals) = match lookup {
            Lookup::Answer {
                answers,
                additionals,
            } => {
                meta.authoritative = true;
                (answers, Vec::new(), additionals)
            }
            Lookup::NoData => {
                meta.authoritative = true;
                (Vec::new(), vec![snap.negative_soa()], Vec::new())
            }
            Lookup::NxDomain => {
                meta.authoritative = true;
                meta.response_code = ResponseCode::NXDomain;
                (Vec::new(), vec![snap.negative_soa()], Vec::new())
            }
            Lookup::Refused => {
                meta.response_code = ResponseCode::Refused;
                (Vec::new(), Vec::new(), Vec::new())
            }
        };
        self.count(&qtype_s, meta.response_code, proto);
        self.send(
            request,
            resp_edns.as_ref(),
            meta,
            [&answers, &authorities, &additionals],
            handle,
        )
        .await
    }
}

/// The metrics label of a query type: known types by name, the rest as `other` (a client
/// must not be able to create unbounded label values).
pub(crate) fn qtype_label(t: RecordType) -> String {
    use RecordType as T;
    match t {
        T::A
        | T::AAAA
        | T::CNAME
        | T::TXT
        | T::SOA
        | T::NS
        | T::ANY
        | T::AXFR
        | T::IXFR
        | T::MX
        | T::PTR
        | T::SRV
        | T::HTTPS
        | T::SVCB
        | T::DS
        | T::DNSKEY
        | T::CAA => t.to_string(),
        _ => "other".to_owned(),
    }
}

/// Collects the encoded replies of one request (several for a zone transfer).
#[derive(Clone)]
struct Collector {
    protocol: Protocol,
    out: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Collector {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory-server's own handle: over UDP at most 512 bytes, or the EDNS payload
        // size; what does not fit is left out and TC set.
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, Edns::max_payload),
            _ => u16::MAX,
        };
        let meta = *response.metadata();
        let mut bytes = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut bytes);
        enc.set_max_size(max);
        let info = match response.destructive_emit(&mut enc) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a DNS answer; SERVFAIL");
                bytes.clear();
                let mut m = Message::new(meta.id, MessageType::Response, meta.op_code);
                m.metadata.recursion_desired = meta.recursion_desired;
                m.metadata.response_code = ResponseCode::ServFail;
                bytes = m.to_vec()?;
                fallback_info(m.metadata)
            }
        };
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes);
        Ok(info)
    }
}

/// Answers one DNS message from `src` on the general path; returns the encoded replies
/// (none for a message too short for a header or a response).
pub(crate) async fn general(
    handler: &Handler,
    bytes: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
) -> Vec<Vec<u8>> {
    let Ok(header) = Header::read(&mut hickory_proto::serialize::binary::BinDecoder::new(
        &bytes,
    )) else {
        return Vec::new();
    };
    if header.metadata.message_type != MessageType::Query {
        // Never answer a response: two servers could bounce errors forever.
        return Vec::new();
    }
    let request = match Request::from_bytes(bytes, src, protocol) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%src, error = %e, "malformed DNS query; FORMERR");
            handler.count("-", ResponseCode::FormErr, protocol);
            let mut m = Message::new(
                header.metadata.id,
                MessageType::Response,
                header.metadata.op_code,
            );
            m.metadata.recursion_desired = header.metadata.recursion_desired;
            m.metadata.response_code = ResponseCode::FormErr;
            return m.to_vec().map(|b| vec![b]).unwrap_or_default();
        }
    };
    if tracing::enabled!(tracing::Level::DEBUG) {
        let q = request.queries.queries().first();
        tracing::debug!(
            %src,
            proto = %protocol,
            id = request.metadata.id,
            qname = ?q.map(|q| q.name().to_string()),
            qtype = ?q.map(|q| q.query_type()),
            "DNS query (general path)"
        );
    }
    let out = Collector {
        protocol,
        out: Arc::default(),
    };
    handler
        .handle_request::<_, TokioTime>(&request, out.clone())
        .await;
    std::mem::take(&mut *out.out.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Sends NOTIFY (RFC 1996) for `serial` to `target` until it answers or `attempts` run out.
pub(crate) async fn notify_one(
    origin: Name,
    soa: Record,
    target: SocketAddr,
    attempts: u32,
) -> bool {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let Ok(sock) = UdpSocket::bind(bind).await else {
        return false;
    };
    let id = crate::zone::Rng::new().id();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(origin, RecordType::SOA));
    msg.add_answer(soa);
    let Ok(bytes) = msg.to_vec() else {
        return false;
    };
    let mut buf = vec![0u8; 4096];
    for attempt in 0..attempts {
        if sock.send_to(&bytes, target).await.is_err() {
            return false;
        }
        let wait = Duration::from_millis(500 << attempt.min(4));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == target => {
                    if let Ok(reply) = Message::from_vec(&buf[..n])
                        && reply.metadata.id == id
                        && reply.metadata.message_type == MessageType::Response
                    {
                        return true;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return false,
                Err(_) => break,
            }
        }
    }
    false
}

/// Sends NOTIFY to every configured secondary on each serial change, until cancelled.
pub(crate) async fn notify_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    if shared.config.notify.is_empty() {
        return;
    }
    let mut rx = shared.serial_changes();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let snap = shared.snapshot();
        let mut set = tokio::task::JoinSet::new();
        for &target in &shared.config.notify {
            set.spawn(notify_one(
                snap.params.origin.clone(),
                snap.soa(),
                target,
                5,
            ));
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => { set.abort_all(); return; }
                next = set.join_next() => match next {
                    Some(Ok(true)) => { shared.metrics.notifies.inc(); }
                    Some(_) => {}
                    None => break,
                }
            }
        }
        tracing::debug!(serial = snap.serial, "secondaries notified");
    }
}
