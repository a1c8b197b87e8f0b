//! What other tools write, through the CLI: an OCI layout made by `umoci insert` (layer tars
//! without end-of-archive blocks) is a `FROM oci:` base that builds and exports, and the
//! docker-archives skopeo and buildah make of it (layers linked from `<id>/layer.tar`) load.

mod common;

use common::*;
use std::process::Command;

#[test]
fn umoci_layouts_build_and_export_and_skopeo_and_buildah_docker_archives_load() {
    need("umoci", "umoci");
    need("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    write_files(&tree, &[("etc/motd", "from umoci\n")]);
    let layout = tmp.path().join("layout");
    let image = format!("{}:v1", layout.display());
    sh(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    sh(Command::new("umoci").args(["new", "--image", &image]));
    sh(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(tree.join("etc"))
        .arg("/etc"));

    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            (
                "Kubefile",
                &format!("FROM oci:{image}\nCOPY extra /extra\n"),
            ),
            ("extra", "mine\n"),
        ],
    );
    ok(&store, &["build", "-t", "umoci:1", ctx.to_str().unwrap()]);
    let out = tmp.path().join("root.tar");
    ok(
        &store,
        &[
            "export",
            "umoci:1",
            "--format",
            "tar",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let listing = sh(Command::new("tar").arg("-xOf").arg(&out).arg("etc/motd"));
    assert_eq!(listing, "from umoci\n");

    let docker = tmp.path().join("skopeo.docker.tar");
    sh(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:chasi/umoci:v2", docker.display()),
    ]));
    let members = sh(Command::new("tar").arg("-tvf").arg(&docker));
    assert!(members.contains("/layer.tar -> ../"), "{members}");
    let loaded = ok(&store, &["load", docker.to_str().unwrap()]);
    assert!(loaded.contains("chasi/umoci:v2"), "{loaded}");

    // buildah writes the same shape; its storage lives in the test's directory.
    need("buildah", "buildah");
    let buildah = |args: &[&str]| {
        sh(Command::new("buildah")
            .args(["--storage-driver", "vfs", "--root"])
            .arg(tmp.path().join("buildah-root"))
            .arg("--runroot")
            .arg(tmp.path().join("buildah-run"))
            .args(args))
    };
    // Into buildah's storage by skopeo (`buildah pull oci:` names the image after its path).
    sh(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        &format!("oci:{image}"),
        &format!(
            "containers-storage:[vfs@{}+{}]localhost/chasi/src:v1",
            tmp.path().join("buildah-root").display(),
            tmp.path().join("buildah-run").display()
        ),
    ]));
    let by_buildah = tmp.path().join("buildah.docker.tar");
    buildah(&[
        "push",
        "-q",
        "localhost/chasi/src:v1",
        &format!("docker-archive:{}:chasi/buildah:v3", by_buildah.display()),
    ]);
    let members = sh(Command::new("tar").arg("-tvf").arg(&by_buildah));
    assert!(members.contains("/layer.tar -> ../"), "{members}");
    let loaded = ok(&store, &["load", by_buildah.to_str().unwrap()]);
    assert!(loaded.contains("chasi/buildah:v3"), "{loaded}");
}

/// `ADD rootfs.tar` of an archive made by GNU tar with `--xattrs --acls` (PAX records whose
/// values hold newlines) builds, and the files come out of `chasi export`.
#[test]
fn add_of_a_gnu_tar_with_acls_builds() {
    need("setfacl", "acl");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    write_files(
        &tree,
        &[("etc/shadow", "root:*:1::::::\n"), ("bin/tool", "x\n")],
    );
    sh(Command::new("setfacl")
        .args(["-m", "u:1000:r--,g:42:r--"])
        .arg(tree.join("etc/shadow")));
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD rootfs.tar /\n")]);
    sh(Command::new("tar")
        .args(["--xattrs", "--acls", "--format=posix", "-cf"])
        .arg(ctx.join("rootfs.tar"))
        .arg("-C")
        .arg(&tree)
        .args(["etc", "bin"]));
    let raw = std::fs::read(ctx.join("rootfs.tar")).unwrap();
    assert!(
        raw.windows(18).any(|w| w == b"SCHILY.acl.access="),
        "GNU tar wrote ACL records"
    );
    ok(&store, &["build", "-t", "acl:1", ctx.to_str().unwrap()]);
    let out = tmp.path().join("root.tar");
    ok(
        &store,
        &[
            "export",
            "acl:1",
            "--format",
            "tar",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let shadow = sh(Command::new("tar").arg("-xOf").arg(&out).arg("etc/shadow"));
    assert_eq!(shadow, "root:*:1::::::\n");
}
