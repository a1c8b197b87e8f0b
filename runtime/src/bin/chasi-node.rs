//! `chasi-node`: the node runtime's own binary (static, for nodes without the `chasi` CLI). The same
//! commands are `chasi node …`; both call `chasi_runtime::cli::run`.

use chasi_runtime::cli::{self, NodeArgs};
use clap::Parser;
use std::io::Write as _;
use std::process::ExitCode;

/// Apply images and deltas to this node's A/B slots, roll back, verify.
#[derive(Debug, Parser)]
#[command(name = "chasi-node", version)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.node.format_is_json();
    let mut out = std::io::stdout().lock();
    match cli::run(cli.node, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&anyhow::Error::new(e), json);
            ExitCode::from(1)
        }
    }
}

fn report(e: &anyhow::Error, json: bool) {
    let mut parts = chasi_oci::error::causes(e.as_ref()).into_iter();
    let message = parts.next().unwrap_or_default();
    let causes: Vec<String> = parts.collect();
    let kind = e
        .downcast_ref::<chasi_runtime::NodeError>()
        .map_or("error", chasi_runtime::NodeError::kind);
    if json {
        let v = serde_json::json!({"error": {"message": message, "causes": causes, "kind": kind}});
        let _ = writeln!(std::io::stdout(), "{v}");
    } else {
        let mut text = message;
        for c in causes {
            text.push_str(": ");
            text.push_str(&c);
        }
        eprintln!("error: {text}");
    }
}
