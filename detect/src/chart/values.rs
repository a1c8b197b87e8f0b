//! Helm's values of a chart tree: a subchart's values are its `values.yaml` under what the
//! parent sets at `.Values.<subchart>` (the parent wins, a `null` removes a default), with
//! the parent's `global` copied down (the parent wins); then dependencies are enabled or
//! not by their `condition` (the first path that holds a boolean) and `tags`, evaluated on
//! those coalesced values, as Helm's `ProcessDependencies` does.

use std::path::Path;

use super::load::Chart;
use crate::report::Report;
use crate::template::value::{Map, Value};

/// A chart whose values are final, with its enabled subcharts.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The chart.
    pub(crate) chart: Chart,
    /// Its `.Values`.
    pub(crate) values: Value,
    /// Enabled subcharts.
    pub(crate) subcharts: Vec<Resolved>,
}

/// `defaults` under `dest`: keys of `dest` win, maps merge, `null` in `dest` removes.
pub(crate) fn coalesce(dest: &mut Map, defaults: &Map, depth: usize) {
    if depth > 100 {
        return;
    }
    for (k, dv) in defaults {
        match dest.get_mut(k) {
            None => {
                dest.insert(k.clone(), dv.deep_copy(0));
            }
            Some(Value::Nil) => {
                dest.remove(k);
            }
            Some(Value::Map(m)) => {
                if let Value::Map(d) = dv {
                    let d = d.borrow().clone();
                    coalesce(&mut m.borrow_mut(), &d, depth + 1);
                }
            }
            Some(_) => {}
        }
    }
}

fn as_map(v: Option<&Value>) -> Map {
    match v {
        Some(Value::Map(m)) => m.borrow().clone(),
        _ => Map::new(),
    }
}

/// The parent's globals over the subchart's: the parent wins.
fn globals(sub: &mut Map, parent: &Map) {
    let mut g = as_map(sub.get("global"));
    for (k, v) in as_map(parent.get("global")) {
        match (g.get(&k), &v) {
            (Some(Value::Map(own)), Value::Map(pv)) => {
                let mut merged = pv.borrow().clone();
                let own = own.borrow().clone();
                coalesce(&mut merged, &own, 0);
                g.insert(k, Value::map(merged));
            }
            _ => {
                g.insert(k, v.deep_copy(0));
            }
        }
    }
    sub.insert("global".into(), Value::map(g));
}

fn lookup(values: &Map, path: &str) -> Option<Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur = values.get(first)?.clone();
    for p in parts {
        let next = match &cur {
            Value::Map(m) => m.borrow().get(p).cloned()?,
            _ => return None,
        };
        cur = next;
    }
    Some(cur)
}

fn enabled(
    dep: &super::load::Dependency,
    values: &Map,
    chart_yaml: &Path,
    report: &mut Report,
) -> bool {
    if let Some(cond) = &dep.condition {
        for path in cond.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match lookup(values, path) {
                Some(Value::Bool(b)) => return b,
                Some(Value::Nil) | None => {}
                Some(other) => report.warning(
                    chart_yaml,
                    0,
                    0,
                    format!(
                        "condition path {path} of dependency {} holds a {}, not a boolean; ignored",
                        dep.name,
                        other.type_name()
                    ),
                ),
            }
        }
    }
    let tags = as_map(values.get("tags"));
    let mut has_true = false;
    let mut has_false = false;
    for t in &dep.tags {
        match tags.get(t) {
            Some(Value::Bool(true)) => has_true = true,
            Some(Value::Bool(false)) => has_false = true,
            _ => {}
        }
    }
    has_true || !has_false
}

/// Resolves `chart` with `values` (already coalesced for it).
pub(crate) fn resolve(
    mut chart: Chart,
    mut values: Map,
    report: &mut Report,
    depth: usize,
) -> Resolved {
    let chart_yaml = chart.base.join("Chart.yaml");
    let mut subs = std::mem::take(&mut chart.subcharts);
    // Aliases: a dependency used under another name (possibly more than once).
    let mut named: Vec<(Chart, Option<super::load::Dependency>)> = Vec::new();
    for dep in &chart.dependencies {
        let used = dep.alias.clone().unwrap_or_else(|| dep.name.clone());
        match subs.iter().find(|s| s.name == dep.name || s.name == used) {
            Some(s) => {
                let mut s = s.clone();
                s.name = used;
                named.push((s, Some(dep.clone())));
            }
            None => report.error(
                &chart_yaml,
                0,
                0,
                format!(
                    "dependency {used} of chart {} is declared but missing in charts/",
                    chart.name
                ),
            ),
        }
    }
    subs.retain(|s| {
        !chart
            .dependencies
            .iter()
            .any(|d| d.name == s.name || d.alias.as_deref() == Some(&s.name))
    });
    named.extend(subs.into_iter().map(|s| (s, None)));
    // Coalesce every subchart's values first: conditions read them.
    let mut prepared = Vec::new();
    for (sub, dep) in named {
        let mut sv = as_map(values.get(&sub.name));
        coalesce(&mut sv, &sub.values, 0);
        globals(&mut sv, &values);
        values.insert(sub.name.clone(), Value::map(sv.clone()));
        prepared.push((sub, dep, sv));
    }
    let mut subcharts = Vec::new();
    for (sub, dep, sv) in prepared {
        if let Some(dep) = &dep {
            if !enabled(dep, &values, &chart_yaml, report) {
                continue;
            }
        }
        if depth >= 16 {
            report.error(&sub.base, 0, 0, "subcharts nested too deep");
            continue;
        }
        let r = resolve(sub, sv, report, depth + 1);
        // The parent sees the subchart's final values under its name.
        values.insert(r.chart.name.clone(), r.values.clone());
        subcharts.push(r);
    }
    Resolved {
        chart,
        values: Value::map(values),
        subcharts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::funcs::yaml_to_value;
    use crate::yaml::parse_stream;

    fn map(text: &str) -> Map {
        match yaml_to_value(&parse_stream(text).unwrap()[0]) {
            Value::Map(m) => m.borrow().clone(),
            _ => panic!(),
        }
    }

    #[test]
    fn parent_values_win_and_null_removes() {
        let mut dest = map("a: 1\nb: {x: 2}\nc: null\n");
        coalesce(&mut dest, &map("a: 9\nb: {x: 9, y: 3}\nc: 4\nd: 5\n"), 0);
        assert_eq!(Value::map(dest).to_go(), "map[a:1 b:map[x:2 y:3] d:5]");
    }

    #[test]
    fn globals_come_down() {
        let mut sub = map("global: {registry: sub, own: 1}\n");
        globals(&mut sub, &map("global: {registry: parent}\n"));
        assert_eq!(
            Value::map(sub).to_go(),
            "map[global:map[own:1 registry:parent]]"
        );
    }
}
