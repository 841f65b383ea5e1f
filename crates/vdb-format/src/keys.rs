//! ClamAV RSA key sets: the official keys built in, and a network's own set loaded from text.
//!
//! A key set has three public keys: the legacy CVD header key, the `.info` DSIG key and the
//! cdiff key (spec §1.4, §1.5). The text form is one `name = value` pair per line with
//! decimal integers; private key files (made by `vdb db keygen`) add `*.d`, `*.p`, `*.q`, which
//! this parser ignores so that the same file can be used to verify.

use rsa::BigUint;

/// An RSA public key, with a name for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublic {
    /// Modulus.
    pub n: BigUint,
    /// Public exponent.
    pub e: BigUint,
    /// Name shown in errors ("official CVD", "mynet .info").
    pub name: String,
}

/// The three public keys of a ClamAV key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Name of the set ("official" for ClamAV's).
    pub name: String,
    /// Legacy CVD header signature key.
    pub cvd: RsaPublic,
    /// `.info` `DSIG:` key.
    pub info: RsaPublic,
    /// `.cdiff` trailer key.
    pub cdiff: RsaPublic,
}

const OFFICIAL_CVD_N: &str = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037";
const OFFICIAL_CVD_E: &str = "100001027";
const OFFICIAL_INFO_N: &str = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977";
const OFFICIAL_INFO_E: &str = "100002049";
const OFFICIAL_CDIFF_N: &str = "14783905874077467090262228516557917570254599638376203532031989214105552847269687489771975792123442185817287694951949800908791527542017115600501303394778618535864845235700041590056318230102449612217458549016089313306591388590790796515819654102320725712300822356348724011232654837503241736177907784198700834440681124727060540035754699658105895050096576226753008596881698828185652424901921668758326578462003247906470982092298106789657211905488986281078346361469524484829559560886227198091995498440676639639830463593211386055065360288422394053998134458623712540683294034953818412458362198117811990006021989844180721010947";
const OFFICIAL_CDIFF_E: &str = "100002053";

/// The parts of a key set file.
pub(crate) const KEY_ROLES: [&str; 3] = ["cvd", "info", "cdiff"];

/// Why a key set file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A line that is not `name = value`.
    #[error("line {0}: expected `name = value`")]
    Syntax(usize),
    /// A value that is not a decimal integer.
    #[error("line {0}: {1} is not a decimal integer")]
    Number(usize, String),
    /// A field name this format does not have.
    #[error("line {0}: unknown field {1:?}")]
    UnknownField(usize, String),
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(String),
    /// A key is too small to carry the signatures ClamAV expects.
    #[error("{0} key is {1} bits; at least 1024 bits are needed")]
    TooSmall(String, u64),
}

fn big(s: &str) -> BigUint {
    s.parse().expect("built-in key constants are decimal")
}

impl KeySet {
    /// ClamAV's official keys, as compiled into every ClamAV client.
    pub fn official() -> Self {
        let key = |n, e, role: &str| RsaPublic {
            n: big(n),
            e: big(e),
            name: format!("official {role}"),
        };
        Self {
            name: "official".into(),
            cvd: key(OFFICIAL_CVD_N, OFFICIAL_CVD_E, "cvd"),
            info: key(OFFICIAL_INFO_N, OFFICIAL_INFO_E, "info"),
            cdiff: key(OFFICIAL_CDIFF_N, OFFICIAL_CDIFF_E, "cdiff"),
        }
    }

    /// Parses a key set file (public or private; private fields are ignored here).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let fields = parse_fields(text)?;
        let get = |name: &str| -> Result<BigUint, KeyError> {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| KeyError::Missing(name.into()))
        };
        let set_name = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == "name")
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "custom".into());
        let key = |role: &str| -> Result<RsaPublic, KeyError> {
            let n = get(&format!("{role}.n"))?;
            if n.bits() < 1024 {
                return Err(KeyError::TooSmall(role.into(), n.bits() as u64));
            }
            Ok(RsaPublic {
                n,
                e: get(&format!("{role}.e"))?,
                name: format!("{set_name} {role}"),
            })
        };
        Ok(Self {
            cvd: key("cvd")?,
            info: key("info")?,
            cdiff: key("cdiff")?,
            name: set_name,
        })
    }

    /// The public key set as text (the format [`KeySet::from_text`] reads).
    pub fn to_text(&self) -> String {
        let mut out = format!("# vdbnet ClamAV key set (public)\nname = {}\n", self.name);
        for (role, key) in [
            ("cvd", &self.cvd),
            ("info", &self.info),
            ("cdiff", &self.cdiff),
        ] {
            out.push_str(&format!("{role}.n = {}\n{role}.e = {}\n", key.n, key.e));
        }
        out
    }
}

/// Parses the numeric `role.part = value` fields of a key file (shared with the signer).
pub fn parse_fields(text: &str) -> Result<Vec<(String, BigUint)>, KeyError> {
    let mut fields = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(KeyError::Syntax(i + 1))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "name" {
            continue;
        }
        let valid = k.split_once('.').is_some_and(|(role, part)| {
            KEY_ROLES.contains(&role) && ["n", "e", "d", "p", "q"].contains(&part)
        });
        if !valid {
            return Err(KeyError::UnknownField(i + 1, k.into()));
        }
        let value = v
            .parse::<BigUint>()
            .map_err(|_| KeyError::Number(i + 1, k.into()))?;
        fields.push((k.to_owned(), value));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let official = KeySet::official();
        let back = KeySet::from_text(&official.to_text()).unwrap();
        assert_eq!(back, official);
        assert!(matches!(
            KeySet::from_text("cvd.n = 12\n"),
            Err(KeyError::TooSmall(..)) | Err(KeyError::Missing(_))
        ));
        assert!(matches!(
            KeySet::from_text("foo.n = 12\n"),
            Err(KeyError::UnknownField(1, _))
        ));
        assert!(matches!(
            KeySet::from_text("garbage\n"),
            Err(KeyError::Syntax(1))
        ));
    }
}
