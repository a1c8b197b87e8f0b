//! The container images a cluster image carries, loaded into the node's containerd without a
//! network: `chasi-node images import` and the `images` phase of `apply`.
//!
//! An image built with `--build-mode all` holds them as sealer does, in a `registry/` directory
//! at its root in the distribution registry's storage layout (read by
//! [`chasi_oci::distribution::RegistryDir`], the one reader of that layout). [`import`] walks
//! every tagged image there and writes what containerd lacks through its content service,
//! children first, under a lease; then it creates or updates the image record. Blobs are
//! verified as they are read ([`chasi_oci::blobs::open_verified`]) and containerd verifies the
//! digest and size declared with each write again at commit; a blob that does not match is
//! never committed, and its image is not tagged.
//!
//! **Names.** A repository in the registry directory is the full normalised name without the
//! tag (`docker.io/library/nginx`; a registry port written `_5000`, as `:` cannot be in a
//! repository name), so the containerd image is `<repository>:<tag>` ([`image_name`],
//! [`chasi_oci::distribution::image_name_of`]). The links the builder adds for sealer's registry
//! mirror (`library/nginx` beside `docker.io/library/nginx`) are not imported a second time
//! ([`chasi_oci::distribution::RegistryDir::carried_images`]). A repository whose first component
//! is not a host (no `.`, not `localhost`, no `_PORT`; a directory written by other tools) is
//! read as Docker Hub's, as docker normalises names: `library/nginx` →
//! `docker.io/library/nginx`, `nginx` → `docker.io/library/nginx`.
//!
//! **Labels**, as containerd 1.6's own importer (`ctr images import`) sets them, so its garbage
//! collector keeps what an image references: on a manifest `containerd.io/gc.ref.content.config`
//! (its config) and `containerd.io/gc.ref.content.l.<i>` (its layers, in order); on an index
//! `containerd.io/gc.ref.content.m.<i>` (its manifests). The image record gets
//! `io.cri-containerd.image=managed`, the CRI plugin's mark, so `crictl images` lists it; as
//! after a CRI pull, a second record named by the image id (`sha256:<config>` of the node's
//! platform) points at the same target, so the content stays while containers use the image
//! even if its tag moves. (The CRI plugin makes that record itself only for images that lack
//! the label.)
//! An index whose registry directory holds only some of its manifests (the builder keeps the
//! build's platforms) is imported with the manifests present, as a pull for one platform does.
//!
//! **Unpacking** into a snapshotter is left to containerd: its CRI plugin unpacks an image that
//! is not unpacked when a container is first created from it (and `ctr run` does the same).

pub mod containerd;
pub mod import;

pub use import::{import, registry_images, ImportOptions, ImportReport, ImportedImage};

/// The directory at an image's root that carries its container images.
pub const REGISTRY_DIR: &str = "registry";

/// containerd's socket on a node.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The namespace the CRI plugin (kubelet) uses.
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

/// The label the CRI plugin puts on the images it manages.
pub const CRI_LABEL: (&str, &str) = ("io.cri-containerd.image", "managed");

/// The containerd name of `repository:tag` (see the module documentation).
pub fn image_name(repository: &str, tag: &str) -> String {
    format!(
        "{}:{tag}",
        chasi_oci::distribution::image_name_of(repository)
    )
}

/// Whether an image tree path (no leading `/`) is a tag's `current/link` of the image's
/// registry directory: one tagged container image.
pub fn is_tag_link(path: &[u8]) -> bool {
    let prefix = format!(
        "{REGISTRY_DIR}/{}/repositories/",
        chasi_oci::distribution::V2
    );
    let Some(rest) = path.strip_prefix(prefix.as_bytes()) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(b"/current/link") else {
        return false;
    };
    let marker = b"/_manifests/tags/";
    rest.windows(marker.len())
        .position(|w| w == marker)
        .is_some_and(|i| {
            let tag = &rest[i + marker.len()..];
            i > 0 && !tag.is_empty() && !tag.contains(&b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_a_host_and_normalise_docker_hub() {
        assert_eq!(
            image_name("docker.io/library/nginx", "1.25"),
            "docker.io/library/nginx:1.25"
        );
        assert_eq!(
            image_name("registry.k8s.io/pause", "3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(image_name("localhost/app", "v1"), "localhost/app:v1");
        assert_eq!(
            image_name("127.0.0.1_5000/team/a", "1"),
            "127.0.0.1:5000/team/a:1"
        );
        assert_eq!(
            image_name("localhost_32000/a", "v1"),
            "localhost:32000/a:v1"
        );
        assert_eq!(
            image_name("library/nginx", "1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(image_name("calico/node", "v3"), "docker.io/calico/node:v3");
        assert_eq!(
            image_name("nginx", "latest"),
            "docker.io/library/nginx:latest"
        );
    }

    #[test]
    fn tag_links_are_recognised() {
        let p = "registry/docker/registry/v2/repositories/docker.io/library/nginx/_manifests/tags/1.25/current/link";
        assert!(is_tag_link(p.as_bytes()));
        for not in [
            "registry/docker/registry/v2/repositories/x/_manifests/tags/1/index/sha256/ab/link",
            "registry/docker/registry/v2/repositories/_manifests/tags/1/current/link",
            "registry/docker/registry/v2/repositories/x/_manifests/tags/a/b/current/link",
            "other/docker/registry/v2/repositories/x/_manifests/tags/1/current/link",
        ] {
            assert!(!is_tag_link(not.as_bytes()), "{not}");
        }
    }
}
