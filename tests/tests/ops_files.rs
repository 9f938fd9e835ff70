//! The ops files name only metrics a real sidecar exports: the Grafana dashboard
//! (`ops/grafana/genesys-router.json`) and the Prometheus alert rules
//! (`ops/prometheus/genesys-router.rules.yml`) are parsed, every metric name in their
//! `PromQL` is pulled out, and each must appear in a `/metrics` scrape of a sidecar that
//! has routed successes, a retry and a fallback. Both files are also checked for shape
//! (panel ids, data sources, targets; `for`, severity and annotations on every alert).
//! `promtool check rules` and `promtool test rules` run in `cargo xtask ci`.
//!
//! This binary installs the global Prometheus recorder (one per process), so it holds
//! one test that scrapes; the others only read files.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use gateway_auth::Credentials;
use gateway_model::{EnvironmentConfig, RouteConfig, RouterConfig};
use gateway_router::Router;
use gateway_server::{Sidecar, SidecarOptions};
use gateway_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Scripted, Sim, Target};
use gateway_telemetry::metric_names::{FLEET_DEGRADED, WEBHOOK_SPOOL_BYTES};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const DASHBOARD_PATH: &str = "ops/grafana/genesys-router.json";
const DASHBOARD: &str = include_str!("../../ops/grafana/genesys-router.json");
const RULES_PATH: &str = "ops/prometheus/genesys-router.rules.yml";
const RULES: &str = include_str!("../../ops/prometheus/genesys-router.rules.yml");
const METRIC_NAMES: &str = include_str!("../../crates/gateway-telemetry/src/metric_names.rs");

/// Metrics the ops files may name although the scrape in this test cannot show them,
/// with the reason. Each must still be a name `metric_names.rs` declares.
const ONLY_IN_SPECIAL_CONDITIONS: &[(&str, &str)] = &[
    (
        FLEET_DEGRADED,
        "registered only in fleet mode ([fleet] with a Redis URL)",
    ),
    (
        WEBHOOK_SPOOL_BYTES,
        "registered only with an audit webhook ([audit.webhook])",
    ),
];

/// Grafana's own variables, which a dashboard may use without defining them.
const GRAFANA_BUILTINS: &[&str] = &["__rate_interval", "__interval", "__range"];

/// One `PromQL` expression and where it came from (file and panel or alert).
struct Expr {
    origin: String,
    expr: String,
}

// ---- PromQL: the metric names an expression selects ----

/// Words that are `PromQL` syntax, not metric names: operators and the aggregation
/// operators (which may be followed by `by (...)` rather than `(`).
const PROMQL_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
];
/// Words followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every metric name `expr` selects: identifiers outside strings, label matchers (`{}`),
/// ranges (`[]`) and label lists (`by (...)`), that are neither function names (followed
/// by `(`) nor keywords. Grafana variables (`$model`) are skipped.
fn promql_metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> Result<usize, String> {
        let mut j = from;
        let mut quote = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(_), '\\') => j += 1,
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(chars[j]),
                (None, c) if c == close => return Ok(j + 1),
                _ => {}
            }
            j += 1;
        }
        Err(format!("`{expr}`: no closing `{close}`"))
    };
    let ident_end = |from: usize| {
        let mut j = from;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | ':'))
        {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // A string: find its closing quote as the bracket skipper does.
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!("`{expr}`: unterminated string"));
                }
                i = j + 1;
            }
            '{' => i = skip_to(i + 1, '}')?,
            '[' => i = skip_to(i + 1, ']')?,
            '#' => break,
            '$' => {
                let start = i + 1 + usize::from(chars.get(i + 1) == Some(&'{'));
                i = ident_end(start);
                if chars.get(i) == Some(&'}') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or a duration (`1.5e3`, `5m`); never a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = ident_end(i);
                let word: String = chars[i..end].iter().collect();
                let mut next = end;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let called = chars.get(next) == Some(&'(');
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    i = if called { skip_to(next + 1, ')')? } else { end };
                } else {
                    if !called && !PROMQL_KEYWORDS.contains(&word.as_str()) {
                        names.insert(word);
                    }
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// The Grafana variables (`$name`, `${name}`) `expr` uses.
fn grafana_variables(expr: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let body = rest.strip_prefix('{').unwrap_or(rest);
        let end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        if end > 0 {
            vars.insert(body[..end].to_owned());
        }
    }
    vars
}

// ---- The dashboard ----

/// Checks the dashboard's shape and returns its expressions (targets and variable
/// queries); every problem is reported, each naming the panel and the rule.
fn dashboard_exprs(text: &str) -> Result<Vec<Expr>, Vec<String>> {
    let dashboard: Value =
        serde_json::from_str(text).map_err(|e| vec![format!("{DASHBOARD_PATH}: not JSON: {e}")])?;
    let mut problems = Vec::new();
    let mut exprs = Vec::new();
    let mut problem = |p: String| problems.push(format!("{DASHBOARD_PATH}: {p}"));
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        problem("schemaVersion must be a number of at least 36".into());
    }
    for key in ["uid", "title"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problem(format!("`{key}` must be a non-empty string"));
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    match variable("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => problem(
            "templating needs a `datasource` variable of type datasource, query prometheus".into(),
        ),
    }
    match variable("model").map(|v| (v, v["definition"].as_str())) {
        Some((v, Some(definition)))
            if v["type"] == "query" && definition.starts_with("label_values(") =>
        {
            if v["datasource"]["uid"] != "${datasource}" {
                problem("variable `model` must query the data source `${datasource}`".into());
            }
            let inner = definition["label_values(".len()..].trim_end_matches(')');
            match inner.split_once(',') {
                Some((selector, label)) if label.trim() == "model" => exprs.push(Expr {
                    origin: format!("{DASHBOARD_PATH} variable `model`"),
                    expr: selector.trim().to_owned(),
                }),
                _ => problem(format!(
                    "variable `model`: `{definition}` is not label_values(<metric>, model)"
                )),
            }
        }
        _ => problem("templating needs a `model` variable of type query, label_values(...)".into()),
    }
    let defined: BTreeSet<String> = variables
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .chain(GRAFANA_BUILTINS.iter().map(|b| (*b).to_owned()))
        .collect();
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    if panels.is_empty() {
        problem("`panels` must be a non-empty array".into());
    }
    panel_exprs(&panels, &defined, &mut problems, &mut exprs);
    if problems.is_empty() {
        Ok(exprs)
    } else {
        Err(problems)
    }
}

/// Checks every panel (unique ids, a grid cell, the `${datasource}` Prometheus source,
/// targets with their own refIds and non-empty exprs using defined variables only) and
/// collects the targets' expressions.
fn panel_exprs(
    panels: &[Value],
    defined: &BTreeSet<String>,
    problems: &mut Vec<String>,
    exprs: &mut Vec<Expr>,
) {
    let mut problem = |p: String| problems.push(format!("{DASHBOARD_PATH}: {p}"));
    let mut ids = BTreeSet::new();
    for (n, panel) in panels.iter().enumerate() {
        let title = panel["title"].as_str().unwrap_or("");
        let at = format!("panels[{n}] `{title}`");
        if title.is_empty() {
            problem(format!("{at}: needs a title"));
        }
        match panel["id"].as_u64() {
            Some(id) if !ids.insert(id) => problem(format!("{at}: id {id} is used twice")),
            Some(_) => {}
            None => problem(format!("{at}: needs a numeric id")),
        }
        let grid = &panel["gridPos"];
        let cell = |k: &str| grid[k].as_u64();
        match (cell("x"), cell("y"), cell("w"), cell("h")) {
            (Some(x), Some(_), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {}
            _ => problem(format!(
                "{at}: gridPos needs x, y, w > 0, h > 0 with x + w <= 24"
            )),
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["type"] != "prometheus"
            || panel["datasource"]["uid"] != "${datasource}"
        {
            problem(format!(
                "{at}: datasource must be {{type: prometheus, uid: ${{datasource}}}}"
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problem(format!("{at}: needs at least one target"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in &targets {
            let ref_id = target["refId"].as_str().unwrap_or("");
            if ref_id.is_empty() || !ref_ids.insert(ref_id) {
                problem(format!("{at}: every target needs its own refId"));
            }
            if !target["datasource"].is_null() && target["datasource"] != panel["datasource"] {
                problem(format!(
                    "{at} target {ref_id}: datasource differs from the panel's"
                ));
            }
            let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                problem(format!("{at} target {ref_id}: needs a non-empty expr"));
                continue;
            };
            for var in grafana_variables(expr).difference(defined) {
                problem(format!(
                    "{at} target {ref_id}: `${var}` is neither a dashboard variable nor Grafana's"
                ));
            }
            exprs.push(Expr {
                origin: format!("{DASHBOARD_PATH} {at} target {ref_id}"),
                expr: expr.to_owned(),
            });
        }
    }
}

// ---- The rules file: just enough YAML for a Prometheus rules file ----

/// A YAML mapping key's inline value and the more-indented lines under it.
struct Entry<'a> {
    inline: &'a str,
    children: Vec<&'a str>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The keys at the outermost indentation of `lines`, in order.
fn mapping<'a>(lines: &[&'a str]) -> Result<Vec<(&'a str, Entry<'a>)>, String> {
    let Some(depth) = lines
        .iter()
        .filter(|l| is_content(l))
        .map(|l| indent(l))
        .min()
    else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(&str, Entry<'_>)> = Vec::new();
    for line in lines {
        if is_content(line) && indent(line) == depth {
            let (key, value) = line
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("`{}` is not `key: value`", line.trim()))?;
            out.push((
                key.trim(),
                Entry {
                    inline: value.trim(),
                    children: Vec::new(),
                },
            ));
        } else if let Some((_, entry)) = out.last_mut() {
            entry.children.push(line);
        } else if is_content(line) {
            return Err(format!("`{}` is indented under nothing", line.trim()));
        }
    }
    Ok(out)
}

/// A scalar's text: inline (plain or quoted) or a `|` / `>` block under it.
fn scalar(entry: &Entry<'_>) -> Result<String, String> {
    let v = entry.inline;
    if v.starts_with('|') || v.starts_with('>') {
        let body: Vec<&str> = entry.children.iter().map(|l| l.trim()).collect();
        return Ok(body
            .join(if v.starts_with('|') { "\n" } else { " " })
            .trim()
            .to_owned());
    }
    if !entry.children.iter().all(|l| !is_content(l)) {
        return Err(format!(
            "`{v}` continues on a following line; use a | block"
        ));
    }
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            if q == '"' && inner.contains('\\') {
                return Err(format!("`{v}`: escapes in double quotes are not read here"));
            }
            return Ok(inner.to_owned());
        }
    }
    Ok(v.to_owned())
}

/// Checks every alert's shape and returns the rules' expressions; every problem is
/// reported, each naming the alert and the rule.
fn rules_exprs(text: &str) -> Result<Vec<Expr>, Vec<String>> {
    let mut problems = Vec::new();
    let mut exprs = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // A rule starts at `- alert:` or `- record:`; it ends at the next rule or group.
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let t = lines[i].trim_start();
            t.starts_with("- alert:") || t.starts_with("- record:") || t.starts_with("- name:")
        })
        .chain([lines.len()])
        .collect();
    let mut names = BTreeSet::new();
    for pair in starts.windows(2) {
        let first = lines[pair[0]];
        if first.trim_start().starts_with("- name:") {
            continue;
        }
        // Turn `- alert: X` into `  alert: X` so the item is one mapping.
        let dash = indent(first);
        let opened = format!("{}  {}", " ".repeat(dash), &first.trim_start()[2..]);
        let mut item: Vec<&str> = vec![opened.as_str()];
        item.extend(&lines[pair[0] + 1..pair[1]]);
        let mut report = |p: String| problems.push(format!("{RULES_PATH}: {p}"));
        let entries = match mapping(&item) {
            Ok(entries) => entries,
            Err(e) => {
                report(format!("line {}: {e}", pair[0] + 1));
                continue;
            }
        };
        let get = |key: &str| entries.iter().find(|(k, _)| *k == key).map(|(_, e)| e);
        let Some(alert) = get("alert").and_then(|e| scalar(e).ok()) else {
            report(format!(
                "line {}: recording rules are not expected here",
                pair[0] + 1
            ));
            continue;
        };
        let at = format!("alert `{alert}`");
        if !names.insert(alert.clone()) {
            report(format!("{at}: the name is used twice"));
        }
        match get("expr").map(scalar) {
            Some(Ok(expr)) if !expr.is_empty() => exprs.push(Expr {
                origin: format!("{RULES_PATH} {at}"),
                expr,
            }),
            Some(Err(e)) => report(format!("{at}: expr: {e}")),
            _ => report(format!("{at}: needs a non-empty expr")),
        }
        if get("for")
            .map(scalar)
            .and_then(Result::ok)
            .is_none_or(|f| f.is_empty())
        {
            report(format!("{at}: needs a `for:` duration"));
        }
        let nested = |key: &str| -> BTreeMap<String, String> {
            get(key)
                .and_then(|e| mapping(&e.children).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, e)| scalar(&e).ok().map(|v| (k.to_owned(), v)))
                .collect()
        };
        let labels = nested("labels");
        match labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => report(format!(
                "{at}: labels.severity must be critical, warning or info, not {other:?}"
            )),
        }
        let annotations = nested("annotations");
        for key in ["summary", "description"] {
            if annotations.get(key).is_none_or(String::is_empty) {
                report(format!("{at}: needs annotations.{key}"));
            }
        }
    }
    if names.is_empty() {
        problems.push(format!("{RULES_PATH}: no alert found"));
    }
    if problems.is_empty() {
        Ok(exprs)
    } else {
        Err(problems)
    }
}

// ---- The names the telemetry crate declares ----

/// Every metric name `metric_names.rs` declares (`pub const X: &str = "genesys_router_...";`).
fn declared_metric_names() -> BTreeSet<String> {
    METRIC_NAMES
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|v| v.starts_with("genesys_router_"))
        .map(str::to_owned)
        .collect()
}

fn all_exprs() -> Vec<Expr> {
    let mut problems = Vec::new();
    let mut exprs = Vec::new();
    for result in [dashboard_exprs(DASHBOARD), rules_exprs(RULES)] {
        match result {
            Ok(e) => exprs.extend(e),
            Err(p) => problems.extend(p),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    exprs
}

/// Each name the ops files use, with the first place that uses it.
fn used_names(exprs: &[Expr]) -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    for e in exprs {
        let names =
            promql_metric_names(&e.expr).unwrap_or_else(|why| panic!("{}: {why}", e.origin));
        assert!(
            !names.is_empty(),
            "{}: `{}` selects no metric",
            e.origin,
            e.expr
        );
        for name in names {
            used.entry(name).or_insert_with(|| e.origin.clone());
        }
    }
    used
}

/// The metric family a sample name belongs to, given the `# TYPE` lines: the name
/// itself, or for `_bucket` a histogram and for `_sum` / `_count` a histogram or summary.
fn family<'a>(name: &'a str, types: &BTreeMap<&str, &str>) -> Option<(&'a str, String)> {
    if let Some(kind) = types.get(name) {
        return Some((name, (*kind).to_owned()));
    }
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(kind) = types.get(base).filter(|k| kinds.contains(k))
        {
            return Some((base, (*kind).to_owned()));
        }
    }
    None
}

#[test]
fn ops_files_are_well_formed_and_use_declared_names_only() {
    let exprs = all_exprs();
    let used = used_names(&exprs);
    let declared = declared_metric_names();
    for (name, why) in ONLY_IN_SPECIAL_CONDITIONS {
        assert!(
            declared.contains(*name),
            "{name} ({why}) is not declared in metric_names.rs"
        );
        assert!(
            used.contains_key(*name),
            "{name} is listed as special but no ops file uses it: drop it from the list"
        );
    }
    for (name, origin) in &used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
            .unwrap_or(name);
        assert!(
            declared.contains(base),
            "{origin} uses {name}, which metric_names.rs does not declare"
        );
    }
    // A new metric gets a panel: the dashboard covers every declared name.
    let dashboard_names = used_names(&dashboard_exprs(DASHBOARD).unwrap());
    for name in &declared {
        assert!(
            ["", "_bucket", "_sum", "_count"]
                .iter()
                .any(|s| dashboard_names.contains_key(&format!("{name}{s}"))),
            "{DASHBOARD_PATH} has no panel for {name}"
        );
    }
}

#[test]
fn promql_names_skip_labels_functions_strings_and_variables() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (model, le) (rate(a_bucket{model=~"$model", x="{b}"}[$__rate_interval])))
           / on (model) group_left (kind) label_replace(c_total offset 5m, "from", "$1", "model", "(.*)")
           > bool 1e3 unless sum(rate(d[5m:1m])) without (instance) or ${var} and e:recorded"#,
    )
    .unwrap();
    let expected: BTreeSet<String> = ["a_bucket", "c_total", "d", "e:recorded"]
        .map(str::to_owned)
        .into();
    assert_eq!(names, expected);
    assert!(promql_metric_names("rate(x{a=\"1\"[5m])").is_err());
}

#[test]
fn broken_ops_files_are_reported_by_field() {
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        labels:\n          team: x\n        annotations:\n          summary: s\n";
    let problems = rules_exprs(rules).err().unwrap();
    assert!(
        problems.iter().any(|p| p.contains("`A`: needs a `for:`")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("labels.severity")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("annotations.description")),
        "{problems:?}"
    );

    let mut dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let panels = dashboard["panels"].as_array_mut().unwrap();
    let second_id = panels[1]["id"].clone();
    panels[2]["id"] = second_id;
    panels[1]["targets"][0]["expr"] = Value::from("rate(x[$nope])");
    panels[1]["datasource"] = Value::Null;
    let problems = dashboard_exprs(&dashboard.to_string()).err().unwrap();
    for want in ["is used twice", "`$nope`", "datasource must be"] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want}: {problems:?}"
        );
    }
}

async fn route(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: &str,
) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/route"))
        .body(Full::new(Bytes::from_static(
            br#"{"route":"summarize","prompt":"hello"}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_metric_the_ops_files_use_is_in_a_real_scrape() {
    let metrics = gateway_telemetry::install().unwrap();
    let sim = Sim::builder().start().await.unwrap();
    let audit = tempfile::tempdir().unwrap();
    let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url())).with_route(
        "summarize",
        RouteConfig {
            fallbacks: vec!["model-fallback-3".into()],
            ..RouteConfig::to_model("model-gen-4")
        },
    );
    config.audit.file = audit.path().join("audit.jsonl");
    config.retry.base_delay_ms = 1;
    config.retry.max_delay_ms = 1;
    let router = Router::builder(config)
        .credentials(Credentials::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
        .build()
        .await
        .unwrap();
    let sidecar = Sidecar::start_with(
        router,
        Some(metrics.clone()),
        "127.0.0.1:0".parse().unwrap(),
        SidecarOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", sidecar.addr());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // A success, a retry (one 503), and a fallback (three 503s use up gen-4's attempts).
    route(&client, &base).await;
    let unavailable = Scripted::Status {
        status: 503,
        code: None,
    };
    sim.script(Target::model("model-gen-4"), [unavailable.clone()]);
    route(&client, &base).await;
    sim.script(Target::model("model-gen-4"), vec![unavailable; 3]);
    route(&client, &base).await;

    metrics.run_upkeep();
    let response = client
        .get(format!("{base}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let samples = gateway_telemetry::exposition::parse(&text).unwrap();
    let sample_names: BTreeSet<&str> = samples.keys().map(|(name, _)| name.as_str()).collect();
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();

    let used = used_names(&all_exprs());
    let mut missing = Vec::new();
    for (name, origin) in &used {
        if ONLY_IN_SPECIAL_CONDITIONS.iter().any(|(n, _)| n == name) {
            continue;
        }
        match family(name, &types) {
            Some((base, kind)) if base == name && kind == "histogram" => missing.push(format!(
                "{origin}: {name} is a histogram; select {name}_bucket, _sum or _count"
            )),
            Some(_) if sample_names.contains(name.as_str()) => {}
            Some(_) => missing.push(format!("{origin}: {name} has a type but no sample")),
            None => missing.push(format!("{origin}: {name} is not in the scrape")),
        }
    }
    assert!(
        missing.is_empty(),
        "{}\n--- scrape ---\n{text}",
        missing.join("\n")
    );
    // The series the panels were built for exist after these calls.
    let has = |name: &str, labels: &[(&str, &str)]| {
        samples.contains_key(&gateway_telemetry::exposition::series(name, labels))
    };
    assert!(has(
        "genesys_router_fallbacks_total",
        &[
            ("from", "model-gen-4"),
            ("to", "model-fallback-3"),
            ("reason", "upstream_error")
        ]
    ));
    assert!(has(
        "genesys_router_requests_total",
        &[("model", "model-gen-4"), ("outcome", "circuit_open")]
    ));
    assert!(has(
        "genesys_router_audit_entries_total",
        &[("event", "spooled")]
    ));
    sidecar.shutdown().await.unwrap();
}
