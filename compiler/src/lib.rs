//! `chasi-compiler`: from Kubefile text to a checked build plan.
//!
//! The pipeline inside this crate is `syntax` (pest grammar → span-carrying tree, never fails)
//! → `check` (sealer v0.11 semantics, all problems at once) → `plan` (a DAG of steps whose
//! identities are digests of their definitions and inputs).
//! Every stage reports problems as [`diagnostics::Diagnostic`] values instead of failing.

pub mod check;
pub mod diagnostics;
pub mod plan;
pub mod render;
pub mod source;
pub mod syntax;

/// What [`compile`] needs besides the Kubefile.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions<'a> {
    /// The build context directory; `None` skips every context check.
    pub context: Option<&'a std::path::Path>,
    /// `--build-arg` values.
    pub build_args: std::collections::BTreeMap<String, String>,
    /// Target platforms; empty means the host platform (`linux/<host arch>`).
    pub platforms: Vec<check::Platform>,
    /// `--type`: a cluster image (the default) or an application image.
    pub image_type: check::ImageType,
    /// Stop after checking: no plan (and the context's files are not hashed).
    pub skip_plan: bool,
    /// A cache of file digests by `stat` stamp, so unchanged files are not read again.
    pub file_digests: Option<&'a dyn plan::files::FileDigests>,
}

/// Everything [`compile`] found out about a Kubefile.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The syntax tree and the parser's diagnostics.
    pub parse: syntax::Parse,
    /// The checked program, when there is no error.
    pub program: Option<check::Program>,
    /// The build plan, when there is no error (and it was not skipped).
    pub plan: Option<plan::Plan>,
    /// Every diagnostic (parser and checker), sorted by position.
    pub diagnostics: Vec<diagnostics::Diagnostic>,
}

impl Compiled {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// Parses, checks and plans a Kubefile: the whole front end in one call.
///
/// User mistakes are diagnostics; the only error is an unreadable build context.
pub fn compile(
    source: &source::SourceFile,
    options: &CompileOptions<'_>,
) -> Result<Compiled, check::ContextError> {
    compile_parsed(source, syntax::parse(source), options)
}

/// [`compile`] from the file's raw bytes: invalid UTF-8 is reported (KF111) at its position
/// instead of being silently replaced. Returns the source text the diagnostics refer to.
pub fn compile_bytes(
    name: impl Into<String>,
    bytes: &[u8],
    options: &CompileOptions<'_>,
) -> Result<(source::SourceFile, Compiled), check::ContextError> {
    let (source, parse) = syntax::parse_bytes(name, bytes);
    let compiled = compile_parsed(&source, parse, options)?;
    Ok((source, compiled))
}

fn compile_parsed(
    source: &source::SourceFile,
    parse: syntax::Parse,
    options: &CompileOptions<'_>,
) -> Result<Compiled, check::ContextError> {
    let mut diagnostics = parse.diagnostics.clone();
    let context = match options.context {
        Some(dir) => {
            let (context, ignore_errors) = check::Context::open(dir)?;
            for e in ignore_errors {
                diagnostics.push(diagnostics::Diagnostic::new(
                    diagnostics::Code::InvalidIgnorePattern,
                    source::Span::default(),
                    format!(".kubefileignore line {}: {}", e.line, e.message),
                ));
            }
            Some(context)
        }
        None => None,
    };
    let check_options = check::CheckOptions {
        context: context.as_ref(),
        build_args: &options.build_args,
        platforms: &options.platforms,
        image_type: options.image_type,
    };
    let (program, mut found) = check::check(source, &parse.kubefile, &check_options)?;
    diagnostics.append(&mut found);
    check::sort_diagnostics(&mut diagnostics);
    let ok = !diagnostics.iter().any(|d| d.is_error());
    let plan = if ok && !options.skip_plan {
        let mut plan = plan::plan(&program, context.as_ref(), options.file_digests)?;
        plan::locate(&mut plan, source);
        Some(plan)
    } else {
        None
    };
    Ok(Compiled {
        parse,
        program: ok.then_some(program),
        plan,
        diagnostics,
    })
}
