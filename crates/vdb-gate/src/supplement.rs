//! Supplements: files added to the version a database already holds, without a new version.
//!
//! A follower may miss a cdiff (the upstream failed that request) or start following when the
//! upstream already holds many versions: the network should still serve every cdiff and
//! `.sign` file the upstream has. A new version cannot bring them (the upstream has none), so a
//! *supplement* release does: the same version as held, **the byte-identical container** and
//! every file of the held release unchanged, plus new files. It can change nothing a client
//! already fetched, and it cannot roll anything back (its version is the held one).
//!
//! Its cdiffs cannot be checked by applying them to the held container (they lead to it, or to
//! older versions), so each is checked on its own, as freshclam checks one before applying it:
//! its ClamAV signature under the database's cdiff key, and the version in its header equal to
//! the version in its name. A cdiff name already accepted for the database must keep its bytes
//! (the store checks that against every accepted release).

use std::collections::BTreeMap;

use vdb_format::KeySet;
use vdb_format::cdiff::Cdiff;
use vdb_format::container::{Kind, Limits};
use vdb_proto::{ErrorCode, ReleaseStatement};

use crate::{Held, Refusal};

/// Whether `st` is a supplement of `held`: same version, the held release's container (by
/// name, size and SHA-256) and every other held file unchanged, and at least one file more.
pub(crate) fn is_supplement(held: &Held, st: &ReleaseStatement) -> bool {
    st.version == held.version
        && held
            .files
            .iter()
            .any(|f| Kind::from_file_name(&f.name).is_some())
        && held.files.iter().all(|f| st.files.contains(f))
        && st.files.len() > held.files.len()
}

/// The refusal of a same-version release that is not a supplement.
pub(crate) fn not_a_supplement(held: &Held, st: &ReleaseStatement) -> Refusal {
    Refusal::new(
        ErrorCode::Equivocation,
        format!(
            "{} version {} is already published with other content (release {}); a new build needs a higher version (a supplement of the same version must repeat every held file byte for byte, its container included, and add files)",
            st.db, st.version, held.release
        ),
    )
}

/// Checks each cdiff of a supplement on its own: ClamAV signature under the cdiff key of
/// `keys`, and the header's version equal to the name's.
pub(crate) fn check_cdiffs(
    cdiffs: &BTreeMap<u32, String>,
    bytes: &BTreeMap<String, Vec<u8>>,
    keys: &KeySet,
    limits: &Limits,
) -> Result<(), Refusal> {
    for (n, name) in cdiffs {
        let data = bytes.get(name).map(Vec::as_slice).unwrap_or_default();
        let c = Cdiff::parse(data, limits.max_script_size)
            .map_err(|e| Refusal::new(ErrorCode::BadCdiff, format!("{name}: {e}")))?;
        c.verify(&keys.cdiff)
            .map_err(|e| Refusal::new(ErrorCode::BadCdiff, format!("{name}: {e}")))?;
        if c.version != *n {
            return Err(Refusal::new(
                ErrorCode::VersionMismatch,
                format!("{name} leads to version {} by its header", c.version),
            ));
        }
    }
    Ok(())
}
