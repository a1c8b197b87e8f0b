//! Executes parsed templates over a [`Value`], as Go's `text/template` with Helm's options:
//! a missing map key is nil (`missingkey=zero`) and prints as nothing, a field of nil is
//! the "nil pointer evaluating interface {}" error, variables live until the end of their
//! control structure, `and`/`or` short-circuit. Helm's own functions that need the
//! template set (`include`, `tpl`, `required`, `fail`, `lookup`) are here; the rest are in
//! [`super::funcs`]. Work is bounded: steps, nesting of `include`/`template`, output size.

use std::collections::HashMap;
use std::rc::Rc;

use super::ast::{Arg, Cmd, List, Node, Pipe, Pos};
use super::funcs;
use super::parse::parse;
use super::value::{Object, Value};

/// Most evaluation steps of one render.
const MAX_STEPS: u64 = 20_000_000;
/// Deepest nesting of `template`/`include`/`tpl`.
const MAX_CALL_DEPTH: usize = 64;
/// Most bytes one template, include or tpl may produce.
pub(crate) const MAX_OUTPUT: usize = 16 << 20;

/// A runtime error and its position.
#[derive(Debug, Clone)]
pub(crate) struct ExecError {
    /// Where.
    pub(crate) pos: Pos,
    /// What.
    pub(crate) message: String,
}

enum Flow {
    Err(ExecError),
    Break(Pos),
    Continue(Pos),
}

impl From<ExecError> for Flow {
    fn from(e: ExecError) -> Flow {
        Flow::Err(e)
    }
}

type Res<T> = Result<T, Flow>;

fn fail<T>(pos: Pos, message: impl Into<String>) -> Res<T> {
    Err(Flow::Err(ExecError {
        pos,
        message: message.into(),
    }))
}

/// The named templates (`define`, `block`) of a chart and its subcharts.
#[derive(Debug, Default)]
pub(crate) struct TemplateSet {
    /// By name; later definitions replace earlier ones.
    pub(crate) defines: HashMap<String, Rc<List>>,
    /// File names by file number, for `tpl` sources and messages.
    pub(crate) files: Vec<String>,
    /// The file number given to the text of each `tpl` call site.
    pub(crate) tpl_files: HashMap<(u32, u32, u32), u32>,
}

/// One execution: the set, the variables, the budget.
pub(crate) struct Exec<'a> {
    set: &'a mut TemplateSet,
    vars: Vec<(String, Value)>,
    steps: u64,
    depth: usize,
}

impl<'a> Exec<'a> {
    /// An execution over `set`.
    pub(crate) fn new(set: &'a mut TemplateSet) -> Exec<'a> {
        Exec {
            set,
            vars: Vec::new(),
            steps: 0,
            depth: 0,
        }
    }

    /// Runs `body` with `dot` as `.` and `$`.
    pub(crate) fn run(&mut self, body: &List, dot: &Value, pos: Pos) -> Result<String, ExecError> {
        match self.invoke(body, dot, pos) {
            Ok(s) => Ok(s),
            Err(Flow::Err(e)) => Err(e),
            Err(Flow::Break(p) | Flow::Continue(p)) => Err(ExecError {
                pos: p,
                message: "break or continue outside range".into(),
            }),
        }
    }

    fn invoke(&mut self, body: &List, dot: &Value, pos: Pos) -> Res<String> {
        self.depth += 1;
        if self.depth > MAX_CALL_DEPTH {
            self.depth -= 1;
            return fail(
                pos,
                "templates nested too deep (more than 64 template, include or tpl calls)",
            );
        }
        let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
        let mut out = String::new();
        let r = self.walk(body, dot, &mut out);
        self.vars = saved;
        self.depth -= 1;
        match r {
            Ok(()) => Ok(out),
            Err(Flow::Break(p) | Flow::Continue(p)) => fail(p, "break or continue outside range"),
            Err(e) => Err(e),
        }
    }

    fn step(&mut self, pos: Pos) -> Res<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return fail(pos, "template execution exceeds its budget of steps");
        }
        Ok(())
    }

    fn emit(out: &mut String, s: &str, pos: Pos) -> Res<()> {
        if out.len() + s.len() > MAX_OUTPUT {
            return fail(pos, "template output exceeds 16 MiB");
        }
        out.push_str(s);
        Ok(())
    }

    fn walk(&mut self, list: &List, dot: &Value, out: &mut String) -> Res<()> {
        for node in list {
            self.node(node, dot, out)?;
        }
        Ok(())
    }

    fn scoped(&mut self, list: &List, dot: &Value, out: &mut String) -> Res<()> {
        let mark = self.vars.len();
        let r = self.walk(list, dot, out);
        self.vars.truncate(mark);
        r
    }

    fn node(&mut self, node: &Node, dot: &Value, out: &mut String) -> Res<()> {
        match node {
            Node::Text(t) => Self::emit(out, t, Pos::default()),
            Node::Action(pipe) => {
                self.step(pipe.pos)?;
                let v = self.pipe(pipe, dot)?;
                if pipe.vars.is_empty() {
                    Self::emit(out, &v.to_text(), pipe.pos)?;
                }
                Ok(())
            }
            Node::Cond {
                with,
                branches,
                otherwise,
            } => {
                let mark = self.vars.len();
                for (pipe, body) in branches {
                    self.step(pipe.pos)?;
                    let v = self.pipe(pipe, dot)?;
                    if v.truthy() {
                        let inner = if *with { v } else { dot.clone() };
                        let r = self.walk(body, &inner, out);
                        self.vars.truncate(mark);
                        return r;
                    }
                }
                let r = match otherwise {
                    Some(body) => self.walk(body, dot, out),
                    None => Ok(()),
                };
                self.vars.truncate(mark);
                r
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => self.range(pipe, body, otherwise.as_ref(), dot, out),
            Node::Template { pos, name, pipe } => {
                self.step(*pos)?;
                let data = match pipe {
                    Some(p) => self.pipe(p, dot)?,
                    None => Value::Nil,
                };
                let s = self.call_template(name, &data, *pos)?;
                Self::emit(out, &s, *pos)
            }
            Node::Break(p) => Err(Flow::Break(*p)),
            Node::Continue(p) => Err(Flow::Continue(*p)),
        }
    }

    fn call_template(&mut self, name: &str, data: &Value, pos: Pos) -> Res<String> {
        let Some(body) = self.set.defines.get(name).cloned() else {
            return fail(pos, format!("no template {name:?} is defined"));
        };
        self.invoke(&body, data, pos)
    }

    fn range(
        &mut self,
        pipe: &Pipe,
        body: &List,
        otherwise: Option<&List>,
        dot: &Value,
        out: &mut String,
    ) -> Res<()> {
        self.step(pipe.pos)?;
        let mark = self.vars.len();
        let v = self.pipe_value(pipe, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(m) => m
                .borrow()
                .iter()
                .map(|(k, v)| (Value::str(k.as_str()), v.clone()))
                .collect(),
            Value::Int(n) if *n >= 0 => {
                if *n > 1_000_000 {
                    return fail(pipe.pos, "range over an integer larger than 1000000");
                }
                (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect()
            }
            Value::Nil => Vec::new(),
            Value::Object(o) => match &**o {
                Object::Files(f) => f
                    .keys()
                    .map(|k| (Value::str(k.as_str()), Value::str(k.as_str())))
                    .collect(),
                _ => return fail(pipe.pos, format!("range can't iterate over {}", v.to_go())),
            },
            other => {
                return fail(
                    pipe.pos,
                    format!("range can't iterate over {}", other.to_go()),
                )
            }
        };
        if items.is_empty() {
            let r = match otherwise {
                Some(b) => self.walk(b, dot, out),
                None => Ok(()),
            };
            self.vars.truncate(mark);
            return r;
        }
        for (key, item) in items {
            self.step(pipe.pos)?;
            match pipe.vars.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), item.clone())),
                [k, v, ..] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), item.clone()));
                }
            }
            let r = self.scoped(body, &item, out);
            self.vars.truncate(mark);
            match r {
                Ok(()) | Err(Flow::Continue(_)) => {}
                Err(Flow::Break(_)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A pipeline's value without declaring its variables (range declares per element).
    fn pipe_value(&mut self, pipe: &Pipe, dot: &Value) -> Res<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, value)?);
        }
        Ok(value.unwrap_or(Value::Nil))
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Res<Value> {
        let v = self.pipe_value(pipe, dot)?;
        if pipe.assign {
            for name in &pipe.vars {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return fail(pipe.pos, format!("undefined variable: {name}")),
                }
            }
        } else {
            for name in &pipe.vars {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn var(&self, name: &str, pos: Pos) -> Res<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => fail(pos, format!("undefined variable: {name}")),
        }
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Value, last: Option<Value>) -> Res<Value> {
        self.step(cmd.pos)?;
        let rest = &cmd.args[1..];
        match &cmd.args[0] {
            Arg::Func(pos, name) => self.call(name, *pos, rest, last, dot),
            Arg::Field(pos, fields) => self.chain(dot.clone(), fields, *pos, rest, last, dot),
            Arg::Var(pos, name, fields) => {
                let v = self.var(name, *pos)?;
                if fields.is_empty() {
                    self.no_args(&cmd.args[0], rest, &last, *pos)?;
                    return Ok(v);
                }
                self.chain(v, fields, *pos, rest, last, dot)
            }
            Arg::Sub(pipe, fields) => {
                let v = self.pipe(pipe, dot)?;
                if fields.is_empty() {
                    self.no_args(&cmd.args[0], rest, &last, pipe.pos)?;
                    return Ok(v);
                }
                self.chain(v, fields, pipe.pos, rest, last, dot)
            }
            other => {
                self.no_args(other, rest, &last, cmd.pos)?;
                self.arg(other, dot)
            }
        }
    }

    fn no_args(&self, what: &Arg, rest: &[Arg], last: &Option<Value>, pos: Pos) -> Res<()> {
        if !rest.is_empty() || last.is_some() {
            return fail(
                pos,
                format!("can't give argument to non-function {}", what.describe()),
            );
        }
        Ok(())
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Res<Value> {
        Ok(match arg {
            Arg::Dot => dot.clone(),
            Arg::Field(pos, fields) => self.chain(dot.clone(), fields, *pos, &[], None, dot)?,
            Arg::Var(pos, name, fields) => {
                let v = self.var(name, *pos)?;
                if fields.is_empty() {
                    v
                } else {
                    self.chain(v, fields, *pos, &[], None, dot)?
                }
            }
            Arg::Func(pos, name) => self.call(name, *pos, &[], None, dot)?,
            Arg::Str(s) => Value::Str(s.clone()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil(pos) => return fail(*pos, "nil is not a command"),
            Arg::Sub(pipe, fields) => {
                let v = self.pipe(pipe, dot)?;
                if fields.is_empty() {
                    v
                } else {
                    self.chain(v, fields, pipe.pos, &[], None, dot)?
                }
            }
        })
    }

    fn args(&mut self, args: &[Arg], last: Option<Value>, dot: &Value) -> Res<Vec<Value>> {
        let mut out = Vec::with_capacity(args.len() + 1);
        for a in args {
            out.push(match a {
                Arg::Nil(_) => Value::Nil,
                a => self.arg(a, dot)?,
            });
        }
        out.extend(last);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn chain(
        &mut self,
        mut recv: Value,
        fields: &[String],
        pos: Pos,
        rest: &[Arg],
        last: Option<Value>,
        dot: &Value,
    ) -> Res<Value> {
        let mut last = last;
        for (i, name) in fields.iter().enumerate() {
            let final_field = i + 1 == fields.len();
            let has_args = final_field && (!rest.is_empty() || last.is_some());
            recv = match &recv {
                Value::Nil => {
                    return fail(pos, format!("nil pointer evaluating interface {{}}.{name}"))
                }
                Value::Map(m) => {
                    if has_args {
                        return fail(pos, format!("{name} is not a method but has arguments"));
                    }
                    m.borrow().get(name.as_str()).cloned().unwrap_or(Value::Nil)
                }
                Value::Object(o) => {
                    let args = if final_field {
                        self.args(rest, last.take(), dot)?
                    } else {
                        Vec::new()
                    };
                    match object_field(o, name, args) {
                        Ok(v) => v,
                        Err(m) => return fail(pos, m),
                    }
                }
                other => {
                    return fail(
                        pos,
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    )
                }
            };
        }
        Ok(recv)
    }

    fn call(
        &mut self,
        name: &str,
        pos: Pos,
        rest: &[Arg],
        last: Option<Value>,
        dot: &Value,
    ) -> Res<Value> {
        match name {
            "and" | "or" => {
                let mut v = Value::Nil;
                let n = rest.len() + usize::from(last.is_some());
                if n == 0 {
                    return fail(
                        pos,
                        format!("wrong number of args for {name}: want at least 1 got 0"),
                    );
                }
                for a in rest {
                    v = match a {
                        Arg::Nil(_) => Value::Nil,
                        a => self.arg(a, dot)?,
                    };
                    if v.truthy() == (name == "or") {
                        return Ok(v);
                    }
                }
                Ok(last.unwrap_or(v))
            }
            "include" => {
                let args = self.args(rest, last, dot)?;
                let [Value::Str(n), data] = args.as_slice() else {
                    return fail(
                        pos,
                        "error calling include: want a template name and a value",
                    );
                };
                Ok(Value::str(self.call_template(n, data, pos)?))
            }
            "tpl" => {
                let args = self.args(rest, last, dot)?;
                let [Value::Str(text), data] = args.as_slice() else {
                    return fail(pos, "error calling tpl: want a template string and a value");
                };
                self.tpl(text, data, pos)
            }
            "required" => {
                let args = self.args(rest, last, dot)?;
                let [msg, v] = args.as_slice() else {
                    return fail(pos, "wrong number of args for required: want 2");
                };
                let missing = matches!(v, Value::Nil) || v.as_str() == Some("");
                if missing {
                    return fail(pos, format!("error calling required: {}", msg.to_go()));
                }
                Ok(v.clone())
            }
            "fail" => {
                let args = self.args(rest, last, dot)?;
                let msg = args.first().map(Value::to_go).unwrap_or_default();
                fail(pos, format!("error calling fail: {msg}"))
            }
            "lookup" => {
                // Helm without a cluster (`helm template`, sealer's dry run) returns an empty map.
                let args = self.args(rest, last, dot)?;
                if args.len() != 4 {
                    return fail(pos, "wrong number of args for lookup: want 4");
                }
                Ok(Value::map(Default::default()))
            }
            _ => {
                let args = self.args(rest, last, dot)?;
                let budget = MAX_OUTPUT;
                funcs::call(name, args, budget).map_err(|m| {
                    Flow::Err(ExecError {
                        pos,
                        message: format!("error calling {name}: {m}"),
                    })
                })
            }
        }
    }

    fn tpl(&mut self, text: &str, data: &Value, pos: Pos) -> Res<Value> {
        let next = u32::try_from(self.set.files.len()).unwrap_or(u32::MAX);
        let file = *self
            .set
            .tpl_files
            .entry((pos.file, pos.line, pos.col))
            .or_insert(next);
        if file == next {
            let origin = self
                .set
                .files
                .get(pos.file as usize)
                .cloned()
                .unwrap_or_default();
            self.set.files.push(format!(
                "{origin} (tpl at line {}, column {})",
                pos.line, pos.col
            ));
        }
        let at = |e_pos: Pos, m: &str| {
            format!(
                "error calling tpl: line {}, column {}: {m}",
                e_pos.line, e_pos.col
            )
        };
        let parsed = match parse(text, file) {
            Ok(p) => p,
            Err(e) => return fail(pos, at(e.pos, &e.message)),
        };
        // As Helm's tpl (which parses into a clone of the set), defines stay local to it.
        let mut shadowed = Vec::new();
        for (name, body, _) in parsed.defines {
            let old = self.set.defines.insert(name.clone(), body);
            shadowed.push((name, old));
        }
        let result = self.invoke(&parsed.body, data, pos);
        for (name, old) in shadowed.into_iter().rev() {
            match old {
                Some(b) => self.set.defines.insert(name, b),
                None => self.set.defines.remove(&name),
            };
        }
        match result {
            Ok(s) => Ok(Value::str(s)),
            Err(Flow::Err(e)) if e.pos.file == file => fail(pos, at(e.pos, &e.message)),
            Err(e) => Err(e),
        }
    }
}

fn object_field(o: &Object, name: &str, args: Vec<Value>) -> Result<Value, String> {
    match o {
        Object::Struct {
            type_name, fields, ..
        } => match fields.get(name) {
            Some(v) if args.is_empty() => Ok(v.clone()),
            Some(_) => Err(format!("{name} is not a method but has arguments")),
            None => Err(format!("can't evaluate field {name} in type {type_name}")),
        },
        Object::ApiVersions(list) => match (name, args.as_slice()) {
            ("Has", [Value::Str(v)]) => Ok(Value::Bool(list.iter().any(|x| x == &**v))),
            ("Has", _) => Err("wrong arguments for Has: want one string".into()),
            _ => Err(format!(
                "can't evaluate field {name} in type chartutil.VersionSet"
            )),
        },
        Object::Files(files) => funcs::files_method(files, name, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::value::Map;

    fn render(src: &str, dot: Value) -> Result<String, String> {
        let parsed = parse(src, 0).map_err(|e| e.message)?;
        let mut set = TemplateSet {
            files: vec!["t".into()],
            ..Default::default()
        };
        for (n, b, _) in parsed.defines {
            set.defines.insert(n, b);
        }
        Exec::new(&mut set)
            .run(&parsed.body, &dot, Pos::default())
            .map_err(|e| e.message)
    }

    fn values() -> Value {
        let mut image = Map::new();
        image.insert("repository".into(), Value::str("nginx"));
        image.insert("tag".into(), Value::Float(1.0));
        let mut v = Map::new();
        v.insert("image".into(), Value::map(image));
        v.insert(
            "list".into(),
            Value::list(vec![Value::str("a"), Value::str("b")]),
        );
        v.insert("on".into(), Value::Bool(true));
        let mut top = Map::new();
        top.insert("Values".into(), Value::map(v));
        Value::map(top)
    }

    #[test]
    fn control_structures_and_variables() {
        let src = r#"{{- $x := 1 -}}
{{ if .Values.off }}no{{ else if .Values.on }}{{ $x = 2 }}yes{{ end }} {{ $x }}
{{ range $i, $v := .Values.list }}{{ $i }}={{ $v }},{{ end }}
{{ with .Values.image }}{{ .repository }}:{{ .tag }}{{ end }}
{{ range .Values.list }}{{ if eq . "a" }}{{ continue }}{{ end }}{{ . }}{{ break }}{{ end }}
{{ define "t" }}[{{ .repository }}]{{ end }}{{ template "t" .Values.image }}{{ include "t" $.Values.image | upper }}
{{ .Values.missing }}|{{ (index .Values.list 1) }}|{{ and 1 0 }}{{ or 0 "" "z" }}"#;
        assert_eq!(
            render(src, values()).unwrap(),
            "yes 2\n0=a,1=b,\nnginx:1\nb\n[nginx][NGINX]\n|b|0z"
        );
    }

    #[test]
    fn helm_errors() {
        let e = render("{{ .Values.nope.tag }}", values()).unwrap_err();
        assert_eq!(e, "nil pointer evaluating interface {}.tag");
        let e = render("{{ .Values.list.x }}", values()).unwrap_err();
        assert!(e.contains("can't evaluate field x"), "{e}");
        let e = render(
            r#"{{ required "image.name is required" .Values.image.name }}"#,
            values(),
        )
        .unwrap_err();
        assert!(e.contains("image.name is required"), "{e}");
        let e = render(r#"{{ include "nope" . }}"#, values()).unwrap_err();
        assert!(e.contains("no template \"nope\""), "{e}");
        let e = render(
            r#"{{ define "r" }}{{ include "r" . }}{{ end }}{{ include "r" . }}"#,
            values(),
        )
        .unwrap_err();
        assert!(e.contains("nested too deep"), "{e}");
        assert!(render("{{ $y }}", values()).is_err());
    }

    #[test]
    fn helm_idioms() {
        let src = r#"{{- range $k, $v := dict "b" 2 "a" 1 }}{{ $k }}={{ $v }}{{ $.Values.image.repository }};{{ end }}
{{ with .Values.none }}x{{ else with .Values.image }}{{ .repository }}{{ else }}y{{ end }}
{{- define "labels" }}app: {{ .name }}
tier: {{ .tier | default "web" }}{{ end }}
labels:
  {{- include "labels" (dict "name" "demo") | nindent 2 }}
resources: {{- toYaml (dict "limits" (dict "cpu" "1")) | nindent 2 }}
{{ printf "%s:%v" .Values.image.repository .Values.image.tag | quote }} {{ len .Values.list }} {{ .Values.list | join "," | upper }}
{{ if and .Values.on (not .Values.off) (eq (index .Values.list 0) "a") }}ok{{ end }} {{ ternary "y" "n" (hasKey .Values "on") }} {{ (semver "v1.28.3").Minor }}"#;
        let want = "a=1nginx;b=2nginx;
nginx
labels:
  app: demo
  tier: web
resources:
  limits:
    cpu: \"1\"
\"nginx:1\" 2 A,B
ok y 28";
        assert_eq!(render(src, values()).unwrap(), want);
    }

    #[test]
    fn tpl_renders_values_strings() {
        let mut v = Map::new();
        v.insert("name".into(), Value::str("x"));
        v.insert("t".into(), Value::str("{{ .Values.name }}-suffix"));
        let mut top = Map::new();
        top.insert("Values".into(), Value::map(v));
        assert_eq!(
            render("{{ tpl .Values.t . }}", Value::map(top)).unwrap(),
            "x-suffix"
        );
    }
}
