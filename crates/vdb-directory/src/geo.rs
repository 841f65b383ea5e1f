//! Client address → country → region, from a MaxMind-format database.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the GeoIP database cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file could not be opened or is not a MaxMind DB.
    #[error(
        "cannot read the GeoIP database {path} (fix `geoip_db` in the directory config, or remove it to run without regions)"
    )]
    Open {
        /// The configured path.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// The two record layouts the directory understands: GeoIP2-Country (`country.iso_code`,
/// `registered_country.iso_code`) and the flat `{country_code}` of the ip-location-db builds.
#[derive(Debug, Default, Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// Region lookups: a GeoIP reader plus the config's country → region table.
#[derive(Debug)]
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
    regions: BTreeMap<String, String>,
    default_region: Option<String>,
}

impl Geo {
    /// Opens `path`; `regions` maps upper-case ISO country codes to region names.
    pub fn open(
        path: &Path,
        regions: &BTreeMap<String, String>,
        default_region: Option<String>,
    ) -> Result<Self, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            reader,
            regions: regions
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
                .collect(),
            default_region,
        })
    }

    /// The ISO country code of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let found = self.reader.lookup(ip).ok()?;
        let rec: GeoRecord<'_> = found.decode().ok()??;
        rec.country
            .and_then(|c| c.iso_code)
            .or(rec.country_code)
            .or(rec.registered_country.and_then(|c| c.iso_code))
            .map(str::to_ascii_uppercase)
    }

    /// The region of `ip`: its country's region, else the default region for a known
    /// country, else none.
    pub fn region(&self, ip: IpAddr) -> Option<String> {
        let country = self.country(ip)?;
        self.regions
            .get(&country)
            .cloned()
            .or_else(|| self.default_region.clone())
    }
}
