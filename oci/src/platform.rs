//! Platforms (`os/architecture[/variant]`) and choosing a manifest from an image index.
//!
//! Multi-platform images are an OCI index with one manifest per platform; `chasi save` to a
//! docker-archive, `umoci`, and the build executor all need exactly one of them.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Arch, Os, Platform as OciPlatform, PlatformBuilder};

use super::error::{OciError, OciResult};

/// A platform, `linux/amd64`, `linux/arm64/v8`: the one platform type of the workspace (the
/// compiler's targets, the builder's `FROM --platform`, `export`/`save --platform`, the platforms
/// of an image). `oci-spec`'s platform appears only in documents: [`Platform::from_oci`] and
/// [`Platform::to_oci`] convert.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// GOOS value (`linux`).
    pub os: String,
    /// GOARCH value (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v8`, `v7`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
        }
    }

    /// `linux/<arch>` of the running machine, in GOARCH spelling.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// The platform of an OCI descriptor (the one conversion from `oci-spec`'s type).
    pub fn from_oci(platform: &OciPlatform) -> Self {
        Platform {
            os: platform.os().to_string(),
            architecture: platform.architecture().to_string(),
            variant: platform.variant().clone(),
        }
    }

    /// As an OCI platform object (the one conversion to `oci-spec`'s type).
    pub fn to_oci(&self) -> OciResult<OciPlatform> {
        let mut b = PlatformBuilder::default()
            .os(Os::from(self.os.as_str()))
            .architecture(Arch::from(self.architecture.as_str()));
        if let Some(v) = &self.variant {
            b = b.variant(v.clone());
        }
        b.build().map_err(|e| OciError::BadPlatform {
            platform: self.to_string(),
            reason: e.to_string(),
        })
    }

    /// Whether `other` satisfies this platform as a request: same os and architecture, and
    /// the same variant when this one names one (`arm64` with no variant means `v8`).
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(a), None) => self.architecture == "arm64" && a == "v8",
        }
    }
}

impl FromStr for Platform {
    type Err = OciError;

    fn from_str(s: &str) -> OciResult<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(OciError::BadPlatform {
                platform: s.to_string(),
                reason: "expected os/architecture[/variant] in lowercase, e.g. linux/amd64"
                    .to_string(),
            });
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_and_match() {
        let amd: Platform = "linux/amd64".parse().expect("valid");
        let arm: Platform = "linux/arm64/v8".parse().expect("valid");
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(amd.matches(&amd));
        assert!(!amd.matches(&arm));
        let arm_plain: Platform = "linux/arm64".parse().expect("valid");
        assert!(arm.matches(&arm_plain));
        assert!(arm_plain.matches(&arm));
        for p in [&amd, &arm, &arm_plain] {
            assert_eq!(&Platform::from_oci(&p.to_oci().expect("oci")), p);
        }
        assert_eq!(Platform::linux_amd64(), amd);
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
