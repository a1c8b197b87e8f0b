//! Thousands of deterministic mutations of the fixture charts, values and manifests through
//! `detect`: errors and warnings are expected, a panic, a hang or an `Err` is a bug. (The
//! cargo-fuzz target `detect` in `fuzz/` does the same with coverage guidance.)

mod common;

use std::fs;
use std::path::Path;

use chasi_detect::{detect, Options};
use common::{fixtures, write};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "|",
    "(",
    ")",
    "$x := ",
    "$x",
    "$",
    ".",
    ".Values",
    ".Values.a.b",
    "include \"ingress-nginx.fullname\" .",
    "{{ range .Values.controller.extraContainers }}",
    "{{ end }}",
    "{{ else }}",
    "{{ if . }}",
    "{{ define \"d\" }}",
    "{{ template \"d\" . }}",
    "\"",
    "`",
    "'",
    ":",
    "\n",
    "- ",
    "[",
    "{",
    "&a ",
    "*a",
    "<<: *a\n",
    "toYaml",
    "nindent 4",
    "tpl",
    "{{ $_ := set $ \"self\" $ }}",
    "{{ deepCopy $ }}",
    "{{ printf \"%v %d %s\" . }}",
    "{{ until 5 }}",
    "{{ index . 0 }}",
    "{{ semverCompare \">=1.x\" \"v1\" }}",
    "{{ fromYaml \"a: [\" }}",
    "{{ break }}",
    "{{/* c */}}",
    "\u{e9}",
    "\u{1f600}",
    "\t",
    "  image: ",
    "containers:\n- image: x\n",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 if !bytes.is_empty() => {
                let from = rng.below(bytes.len());
                let end = (from + 1 + rng.below(32)).min(bytes.len());
                let piece = bytes[from..end].to_vec();
                bytes.splice(at..at, piece);
            }
            2 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = (rng.next() & 0xff) as u8;
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, t.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn seeds(dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            seeds(&path, out);
        } else if let Ok(t) = fs::read_to_string(&path) {
            out.push(t);
        }
    }
}

#[test]
fn mutated_charts_and_manifests_never_panic() {
    let mut corpus = Vec::new();
    seeds(&fixtures(), &mut corpus);
    corpus.sort();
    let helpers =
        fs::read_to_string(fixtures().join("rootfs/charts/ingress-nginx/templates/_helpers.tpl"))
            .unwrap();
    let values =
        fs::read_to_string(fixtures().join("rootfs/charts/ingress-nginx/values.yaml")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "charts/m/Chart.yaml",
        "apiVersion: v2\nname: ingress-nginx\nversion: 1.0.0\nappVersion: 1.9.4\n",
    );
    let mut problems = 0;
    // More with CHASI_DETECT_MUTATIONS=N.
    let rounds: usize = std::env::var("CHASI_DETECT_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    for _ in 0..rounds {
        let pick = rng.below(corpus.len());
        let template = mutate(&mut rng, &corpus[pick]);
        write(root.path(), "charts/m/templates/t.yaml", &template);
        write(
            root.path(),
            "charts/m/templates/_helpers.tpl",
            &mutate(&mut rng, &helpers),
        );
        write(
            root.path(),
            "charts/m/values.yaml",
            &mutate(&mut rng, &values),
        );
        let pick = rng.below(corpus.len());
        write(
            root.path(),
            "manifests/m.yaml",
            &mutate(&mut rng, &corpus[pick]),
        );
        write(
            root.path(),
            "manifests/imageList",
            &mutate(&mut rng, "nginx\n\"quay.io/a/b:v1\"\n# c\n"),
        );
        let d = detect(root.path(), &Options::default()).unwrap();
        problems += d.problems.len();
        for p in &d.problems {
            assert!(!p.to_string().is_empty());
        }
    }
    assert!(
        problems > rounds / 2,
        "mutations should mostly be refused, got {problems} problems"
    );
}
