//! The deployment files stay in step with the code: the Elasticsearch index template maps every
//! key of the event JSON, and gives every shipped capture a type that fits the values the
//! shipped patterns produce (a `long` for an `int` capture, never a number type for text).
//!
//! The Prometheus files pass `promtool` (config, rules, and the rule unit tests, which test every
//! alert firing and not firing); the Grafana dashboard and the alert rules use only the metrics
//! factorio-isr exports; the compose file, the Grafana provisioning, the Dockerfile and the
//! systemd unit refer to each other and to factorio-isr consistently.
//!
//! `promtool` comes with the Debian package `prometheus`; without it the `promtool` tests are
//! skipped with a note, unless `FACTORIO_ISR_REQUIRE_PROMTOOL=1` (set by `.ci/run`) makes them
//! fail.

#[path = "support/prom_tools.rs"]
mod prom_tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use factorio_isr::patterns::{self, FieldType};
use regex::Regex;
use serde_json::Value;

fn template() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/logstash/index-template.json");
    let text = std::fs::read_to_string(&path).expect("the index template exists");
    serde_json::from_str(&text).expect("the index template is JSON")
}

#[test]
fn the_template_maps_every_event_key() {
    let t = template();
    assert_eq!(t["index_patterns"][0], "factorio-isr-*");
    let props = &t["template"]["mappings"]["properties"];
    for key in [
        "@timestamp",
        "event_type",
        "server",
        "severity",
        "pattern",
        "fields",
        "message",
        "raw",
        "log",
        "trace_id",
        "span_id",
        "service",
    ] {
        assert!(
            props.get(key).is_some(),
            "the template does not map `{key}`"
        );
    }
    assert_eq!(props["@timestamp"]["type"], "date");
    assert_eq!(props["log"]["properties"]["offset"]["type"], "long");
    for key in ["name", "version", "environment"] {
        assert_eq!(props["service"]["properties"][key]["type"], "keyword");
    }
}

#[test]
fn the_template_types_fit_the_shipped_captures() {
    let t = template();
    let fields = &t["template"]["mappings"]["properties"]["fields"]["properties"];
    let set = patterns::shipped().expect("shipped patterns load");
    for p in set.patterns() {
        for c in &p.captures {
            let Some(mapped) = fields.get(&*c.name).and_then(|m| m["type"].as_str()) else {
                continue; // dynamic mapping: strings become keywords, numbers numbers
            };
            let fits = match c.ty {
                FieldType::Int => mapped == "long",
                FieldType::Float => mapped == "double",
                FieldType::Bool => mapped == "boolean",
                FieldType::String => matches!(mapped, "keyword" | "text"),
            };
            assert!(
                fits,
                "{}: capture `{}` is {:?} but the template maps it as {mapped}",
                p.qualified_name, c.name, c.ty
            );
        }
    }
}

#[test]
fn the_pipeline_reads_json_lines_into_a_daily_index() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/logstash/factorio-isr.conf");
    let conf = std::fs::read_to_string(path).expect("the pipeline exists");
    assert!(conf.contains("codec => json_lines"));
    assert!(conf.contains("index => \"factorio-isr-%{+YYYY.MM.dd}\""));
}

#[test]
fn the_beats_pipeline_reads_the_beats_protocol_into_the_same_index() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/logstash/factorio-isr-beats.conf");
    let conf = std::fs::read_to_string(path).expect("the beats pipeline exists");
    assert!(conf.contains("beats {"));
    assert!(conf.contains("port => 5044"));
    assert!(conf.contains("index => \"factorio-isr-%{+YYYY.MM.dd}\""));
}

// ---- Prometheus, Grafana, compose, Docker, systemd ----

/// Every metric factorio-isr exports (histograms by their base name).
const METRICS: &[&str] = &[
    "factorio_isr_uptime_seconds",
    "factorio_isr_component_status",
    "factorio_isr_lines_read_total",
    "factorio_isr_bytes_read_total",
    "factorio_isr_events_processed_total",
    "factorio_isr_errors_total",
    "factorio_isr_processing_seconds",
    "factorio_isr_event_latency_seconds",
    "factorio_isr_logstash_connected",
    "factorio_isr_logstash_reconnects_total",
    "factorio_isr_logstash_connect_failures_total",
    "factorio_isr_logstash_events_sent_total",
    "factorio_isr_logstash_events_resent_total",
    "factorio_isr_logstash_events_acked_total",
    "factorio_isr_logstash_windows_resent_total",
    "factorio_isr_logstash_ack_latency_seconds",
    "factorio_isr_discord_api_latency_seconds",
    "factorio_isr_discord_requests_total",
    "factorio_isr_discord_rate_limited_total",
    "factorio_isr_discord_dropped_total",
    "factorio_isr_discord_events_sent_total",
    "factorio_isr_discord_queued_events",
    "factorio_isr_pattern_reloads_total",
    "factorio_isr_open_files_limit",
    "factorio_isr_tail_files_open",
    "factorio_isr_tail_files_max",
    "factorio_isr_rcon_connected",
    "factorio_isr_rcon_command_latency_seconds",
    "factorio_isr_rcon_errors_total",
    "factorio_isr_players_online",
    "factorio_isr_game_ups",
    "factorio_isr_server_info",
    "factorio_isr_alertmanager_notifications_total",
    "factorio_isr_alertmanager_alerts_posted_total",
    "factorio_isr_alertmanager_requests_rejected_total",
    "factorio_isr_loki_requests_total",
    "factorio_isr_loki_events_sent_total",
    "factorio_isr_loki_events_rejected_total",
    "factorio_isr_loki_request_latency_seconds",
    "factorio_isr_otlp_logs_requests_total",
    "factorio_isr_otlp_logs_events_sent_total",
    "factorio_isr_otlp_logs_events_rejected_total",
    "factorio_isr_otlp_logs_request_latency_seconds",
];

/// The alerts `alerts.yml` must define.
const ALERTS: &[&str] = &[
    "FactorioIsrDown",
    "FactorioIsrLogstashDisconnected",
    "FactorioIsrDiscordDropping",
    "FactorioIsrProcessingSlow",
    "FactorioIsrPatternReloadFailing",
    "FactorioServerCrashed",
    "FactorioIsrNoLinesRead",
    "FactorioIsrComponentUnhealthy",
    "FactorioIsrRconDown",
    "FactorioIsrRconSlow",
    "FactorioServerUpsLow",
];

/// The SLO alerts `slo.yml` must define: per SLO a page and a ticket.
const SLO_ALERTS: &[&str] = &[
    "FactorioIsrDeliveryErrorBudgetBurn",
    "FactorioIsrDeliveryErrorBudgetTicket",
    "FactorioIsrDiscordErrorBudgetBurn",
    "FactorioIsrDiscordErrorBudgetTicket",
    "FactorioIsrAvailabilityErrorBudgetBurn",
    "FactorioIsrAvailabilityErrorBudgetTicket",
];

fn deploy(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/factorio-isr.json"))
        .unwrap_or_else(|e| panic!("deploy/grafana/factorio-isr.json is not JSON: {e}"))
}

/// `promtool`, or `None` (after a loud note) when it is missing and not required.
fn promtool() -> Option<&'static str> {
    prom_tools::tool("promtool")
}

/// Runs `promtool ARGS` in `dir`; fails the test with its output unless it succeeds.
fn run_promtool(promtool: &str, dir: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running promtool: {e}"));
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_rules_and_the_rule_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let dir = deploy("prometheus");
    run_promtool(promtool, &dir, &["check", "config", "prometheus.yml"]);
    run_promtool(promtool, &dir, &["check", "rules", "alerts.yml"]);
    run_promtool(promtool, &dir, &["test", "rules", "alerts_test.yml"]);
    run_promtool(promtool, &dir, &["check", "rules", "slo.yml"]);
    run_promtool(promtool, &dir, &["test", "rules", "slo_test.yml"]);
}

/// Issue 15: the Alertmanager config parses, with its route tree and receiver.
#[test]
fn amtool_accepts_the_alertmanager_config() {
    let Some(amtool) = prom_tools::tool("amtool") else {
        return;
    };
    let out = Command::new(amtool)
        .args(["check-config", "alertmanager.yml"])
        .current_dir(deploy("alertmanager"))
        .output()
        .unwrap_or_else(|e| panic!("running amtool: {e}"));
    assert!(
        out.status.success(),
        "amtool check-config failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alertmanager_sends_every_alert_to_the_receiver_with_a_token_file() {
    let am = read("alertmanager/alertmanager.yml");
    assert_plain_yaml("alertmanager/alertmanager.yml", &am);
    for needle in [
        "receiver: factorio-isr",
        "- url: http://factorio-isr:9464/alertmanager",
        "send_resolved: true",
        "credentials_file: /run/secrets/alertmanager_token",
        "matchers: ['severity=\"critical\"']",
    ] {
        assert!(am.contains(needle), "alertmanager.yml lacks `{needle}`");
    }
    // The token is a file's, never written in the config.
    assert!(!am.contains("credentials:"), "a token in alertmanager.yml");
}

/// The delivery SLO reads the bucket factorio-isr exports at its threshold.
#[test]
fn the_delivery_slo_selects_the_bucket_factorio_isr_exports() {
    let m = factorio_isr::telemetry::metrics::Metrics::new();
    m.pipeline.latency("logstash");
    let text = m.encode();
    assert!(
        text.contains("factorio_isr_event_latency_seconds_bucket{le=\"5.0\",sink=\"logstash\"}"),
        "no 5 s bucket in:\n{text}"
    );
    let slo = read("prometheus/slo.yml");
    assert!(slo.contains(r#"factorio_isr_event_latency_seconds_bucket{le=~"5|5\\.0"}"#));
}

/// Every `expr` string anywhere in `v`.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    let Some(promtool) = promtool() else { return };
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    assert!(
        all.len() > 20,
        "only {} queries in the dashboard",
        all.len()
    );
    // Grafana's variables, replaced by what they stand for, in recording rules promtool parses.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in all.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$instance", ".*")
            .replace("$server", ".*");
        assert!(!e.contains('$'), "an unknown variable in `{e}`");
        let quoted = serde_json::to_string(&e).expect("a string is JSON");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("dashboard.yml"), rules).expect("writing the rules");
    run_promtool(promtool, dir.path(), &["check", "rules", "dashboard.yml"]);
}

#[test]
fn the_dashboard_has_titled_panels_with_queries_and_the_variables() {
    let d = dashboard();
    assert_eq!(d["uid"], "factorio-isr");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars = d["templating"]["list"]
        .as_array()
        .expect("template variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable `{name}`"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    assert!(var("server")["query"].to_string().contains("server"));

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("a panel id")),
            "id twice: {title}"
        );
        if p["type"] == "row" {
            continue; // a row groups panels; it queries nothing
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: a target without a query");
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            queries += 1;
        }
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: no gridPos");
    }
    assert!(queries > 20);
    // The panels asked of the dashboard, by what they query.
    let text = d.to_string();
    for needle in [
        "up{",
        "factorio_isr_component_status",
        "sum by (server) (rate(factorio_isr_lines_read_total",
        "sum by (event_type) (rate(factorio_isr_events_processed_total",
        "histogram_quantile(0.5, sum by (stage, le) (rate(factorio_isr_processing_seconds_bucket",
        "histogram_quantile(0.95, sum by (stage, le) (rate(factorio_isr_processing_seconds_bucket",
        "histogram_quantile(0.99, sum by (stage, le) (rate(factorio_isr_processing_seconds_bucket",
        "sum by (sink, le) (rate(factorio_isr_event_latency_seconds_bucket",
        "sum by (status) (rate(factorio_isr_discord_requests_total",
        "sum by (reason) (increase(factorio_isr_discord_dropped_total",
        "histogram_quantile(0.99, sum by (server, le) (rate(factorio_isr_rcon_command_latency_seconds_bucket",
        "avg_over_time(factorio_isr_rcon_connected",
        "server=~\\\"$server\\\"",
    ] {
        assert!(
            text.contains(needle),
            "the dashboard does not query `{needle}`"
        );
    }
}

/// The `factorio_isr_*` metric names in `text`, histogram series by their base name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = Regex::new(r"factorio_isr_[a-z_]*[a-z]").expect("the regex compiles");
    re.find_iter(text)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_rules_use_only_exported_metrics() {
    let known: BTreeSet<String> = METRICS.iter().map(|m| (*m).to_owned()).collect();
    let mut all_exprs = Vec::new();
    exprs(&dashboard(), &mut all_exprs);
    let dash = metric_names(&dashboard().to_string());
    for (file, used) in [
        ("grafana/factorio-isr.json", dash.clone()),
        (
            "prometheus/alerts.yml",
            metric_names(&read("prometheus/alerts.yml")),
        ),
        (
            "prometheus/alerts_test.yml",
            metric_names(&read("prometheus/alerts_test.yml")),
        ),
        (
            "prometheus/slo.yml",
            metric_names(&read("prometheus/slo.yml")),
        ),
        (
            "prometheus/slo_test.yml",
            metric_names(&read("prometheus/slo_test.yml")),
        ),
    ] {
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics factorio-isr does not export: {unknown:?}"
        );
    }
    // And the dashboard shows every one of them.
    let queried = metric_names(&all_exprs.join("\n"));
    let missing: Vec<_> = known.difference(&queried).collect();
    assert!(
        missing.is_empty(),
        "the dashboard does not show {missing:?}"
    );
}

#[test]
fn the_metrics_factorio_isr_shows_are_in_the_list() {
    // `# TYPE name type` of every family with a series: the families with labels appear at
    // their first use, the others at once. OpenMetrics names a counter without `_total`.
    let text = factorio_isr::telemetry::metrics::Metrics::new().encode();
    let shown: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, ty)| match ty {
            "counter" => format!("{name}_total"),
            _ => name.to_owned(),
        })
        .collect();
    assert!(shown.len() >= 5, "only {shown:?}");
    let known: BTreeSet<String> = METRICS.iter().map(|m| (*m).to_owned()).collect();
    let unknown: Vec<_> = shown.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "factorio-isr exports {unknown:?}, which the dashboard and the alerts do not know"
    );
}

/// The rule blocks of `alerts.yml`, by alert name.
fn alert_blocks(text: &str) -> Vec<(String, String)> {
    text.split("- alert: ")
        .skip(1)
        .map(|b| {
            let (name, rest) = b.split_once('\n').expect("an alert rule has a body");
            (name.trim().to_owned(), rest.to_owned())
        })
        .collect()
}

#[test]
fn every_alert_is_labelled_annotated_and_tested_both_ways() {
    assert_alerts_tested("alerts.yml", ALERTS, "alerts_test.yml");
    assert_alerts_tested("slo.yml", SLO_ALERTS, "slo_test.yml");
}

/// Every alert of `rules_file` (which has `expected`) has an expression, a severity, a summary
/// and a description, and `tests_file` checks it firing and staying quiet.
fn assert_alerts_tested(rules_file: &str, expected: &[&str], tests_file: &str) {
    let rules = read(&format!("prometheus/{rules_file}"));
    let blocks = alert_blocks(&rules);
    let names: Vec<_> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    for a in expected {
        assert!(names.contains(a), "{rules_file} has no {a}");
    }
    let tests = read(&format!("prometheus/{tests_file}"));
    let ws = Regex::new(r"\s+").expect("the regex compiles");
    let tests = ws.replace_all(&tests, " ");
    for (name, body) in &blocks {
        for key in ["expr:", "severity:", "summary:", "description:"] {
            assert!(body.contains(key), "{name} has no `{key}`");
        }
        let severity = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("severity: "))
            .unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity `{severity}`"
        );
        assert!(
            tests.contains(&format!("alertname: {name} exp_alerts: []")),
            "{tests_file} never checks that {name} stays quiet"
        );
        assert!(
            tests.contains(&format!("alertname: {name} exp_alerts: - exp_labels:")),
            "{tests_file} never checks that {name} fires"
        );
    }
}

#[test]
fn prometheus_scrapes_the_compose_service_and_loads_the_rules() {
    let conf = read("prometheus/prometheus.yml");
    assert!(conf.contains("job_name: factorio-isr"));
    assert!(conf.contains("targets: [\"factorio-isr:9464\"]"));
    assert!(conf.contains("scrape_interval: 15s"));
    assert!(conf.contains("rule_files:\n  - alerts.yml"));
    assert!(conf.contains("\n  - slo.yml\n"));
    assert!(conf.contains("targets: [\"alertmanager:9093\"]"));
}

/// The lines of a top-level section's child `name` (a service of the compose file): from
/// `  name:` to the next line indented two spaces or less.
fn yaml_block<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("  {name}:");
    let mut lines = text.lines().skip_while(|l| *l != head);
    let Some(first) = lines.next() else {
        panic!("no `{name}:` block");
    };
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.trim().is_empty() || l.starts_with('#') || l.starts_with("   ")),
        )
        .collect()
}

/// Line-level sanity of a YAML file: no tabs, indentation in steps of two spaces.
fn assert_plain_yaml(file: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        assert!(!line.contains('\t'), "{file}:{}: a tab", i + 1);
        let indent = line.len() - line.trim_start().len();
        assert!(
            line.trim().is_empty() || indent % 2 == 0,
            "{file}:{}: odd indentation",
            i + 1
        );
    }
}

#[test]
fn the_compose_file_wires_the_services_to_the_deploy_files() {
    let compose = read("docker-compose.yml");
    assert_plain_yaml("docker-compose.yml", &compose);
    for service in [
        "factorio-isr",
        "prometheus",
        "grafana",
        "logstash",
        "elasticsearch",
        "kibana",
        "jaeger",
        "alertmanager",
    ] {
        yaml_block(&compose, service);
    }
    let isr = yaml_block(&compose, "factorio-isr").join("\n");
    for needle in [
        "dockerfile: deploy/Dockerfile",
        "LOGSTASH_ADDR: logstash:5170",
        "OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4317",
        "TRACES_EXPORTER: otlp",
        ":/var/log/factorio:ro",
        "./factorio-isr.toml:/etc/factorio-isr/factorio-isr.toml:ro",
        ":/var/lib/factorio-isr",
        "9464:9464",
    ] {
        assert!(
            isr.contains(needle),
            "the factorio-isr service lacks `{needle}`"
        );
    }
    let es = yaml_block(&compose, "elasticsearch").join("\n");
    assert!(es.contains("discovery.type: single-node"));
    assert!(es.contains("xpack.security.enabled: \"false\""));
    let logstash = yaml_block(&compose, "logstash").join("\n");
    assert!(logstash.contains("./logstash/factorio-isr.conf:/usr/share/logstash/pipeline/"));
    assert!(logstash.contains("condition: service_completed_successfully"));
    // Every file the compose file mounts from this directory exists.
    let mount = Regex::new(r"(?m)^\s+- (\./[^:]+):").expect("the regex compiles");
    let mut mounts = 0;
    for m in mount.captures_iter(&compose) {
        let path = deploy(&m[1]);
        assert!(
            path.exists(),
            "docker-compose.yml mounts {}, which is missing",
            &m[1]
        );
        mounts += 1;
    }
    assert!(mounts >= 7, "only {mounts} mounts");
    // Grafana's provisioning finds Prometheus and the dashboard where compose puts them.
    let datasource = read("grafana/provisioning/datasources/prometheus.yml");
    let provider = read("grafana/provisioning/dashboards/factorio-isr.yml");
    assert_plain_yaml("datasources/prometheus.yml", &datasource);
    assert_plain_yaml("dashboards/factorio-isr.yml", &provider);
    assert!(datasource.contains("apiVersion: 1"));
    assert!(datasource.contains("type: prometheus"));
    assert!(datasource.contains("url: http://prometheus:9090"));
    assert!(provider.contains("apiVersion: 1"));
    assert!(provider.contains("type: file"));
    assert!(provider.contains("path: /etc/grafana/dashboards"));
    let grafana = yaml_block(&compose, "grafana").join("\n");
    assert!(
        grafana.contains("./grafana/factorio-isr.json:/etc/grafana/dashboards/factorio-isr.json")
    );
    assert!(
        grafana
            .contains("./grafana/provisioning/datasources:/etc/grafana/provisioning/datasources")
    );
    assert!(
        grafana.contains("./grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards")
    );
    let prometheus = yaml_block(&compose, "prometheus").join("\n");
    assert!(prometheus.contains("./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"));
    assert!(prometheus.contains("./prometheus/alerts.yml:/etc/prometheus/alerts.yml"));
    assert!(prometheus.contains("./prometheus/slo.yml:/etc/prometheus/slo.yml"));
    let alertmanager = yaml_block(&compose, "alertmanager").join("\n");
    assert!(
        alertmanager.contains("./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml")
    );
    assert!(alertmanager.contains("- alertmanager_token"));
    assert!(alertmanager.contains("--cluster.listen-address="));
    assert!(isr.contains("ALERTMANAGER_TOKEN: ${ALERTMANAGER_TOKEN:-}"));
}

#[test]
fn the_image_runs_factorio_isr_unprivileged_with_its_config() {
    let docker = read("Dockerfile");
    let froms = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not a multi-stage build");
    assert!(docker.contains("cargo build --release --locked"));
    let user = docker
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    assert!(docker.contains("\nEXPOSE 9464\n"));
    assert!(docker.contains("STATE_DIRECTORY=/var/lib/factorio-isr"));
    assert!(docker.contains("VOLUME [\"/var/lib/factorio-isr\"]"));
    assert!(docker.contains("ENTRYPOINT [\"factorio-isr\", \"run\"]"));
    assert!(docker.contains(
        "CMD [\"--config\", \"/etc/factorio-isr/factorio-isr.toml\", \"--metrics-addr\", \
         \"0.0.0.0:9464\", \"--poll\"]"
    ));
    assert!(docker.contains("COPY deploy/factorio-isr.toml /etc/factorio-isr/factorio-isr.toml"));
    let ignore = read("Dockerfile.dockerignore");
    let rules: Vec<_> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(rules.contains(&"target"));
    assert!(rules.contains(&"!deploy/factorio-isr.toml"));
}

#[test]
fn the_image_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(deploy("factorio-isr.toml"))
        .output()
        .expect("running factorio-isr check");
    assert!(
        out.status.success(),
        "factorio-isr check rejects deploy/factorio-isr.toml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_runs_factorio_isr_sandboxed() {
    let unit = read("systemd/factorio-isr.service");
    let service: Vec<(&str, &str)> = unit
        .lines()
        .skip_while(|l| *l != "[Service]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| {
        service
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].contains("factorio-isr run"),
        "ExecStart={}",
        exec[0]
    );
    assert!(exec[0].contains("--config /etc/factorio-isr/factorio-isr.toml"));
    for (key, want) in [
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", "20"),
        ("Restart", "on-failure"),
        ("StateDirectory", "factorio-isr"),
        ("EnvironmentFile", "-/etc/factorio-isr/env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(get(key), [want], "{key}");
    }
    assert!(unit.contains("[Install]\nWantedBy=multi-user.target"));
    assert!(
        !unit.contains("DISCORD_WEBHOOK_URL=http"),
        "a secret in the unit"
    );
}

/// Issue 11, item 8: on a machine without Prometheus the README's `cargo test` passes (the
/// promtool checks are skipped with a note); `.ci/run` makes them required.
#[test]
fn a_missing_prometheus_tool_skips_unless_required() {
    assert_eq!(prom_tools::decide("promtool", true, None), Ok(true));
    assert_eq!(prom_tools::decide("promtool", true, Some("1")), Ok(true));
    assert_eq!(prom_tools::decide("promtool", false, None), Ok(false));
    assert_eq!(prom_tools::decide("promtool", false, Some("0")), Ok(false));
    let err = prom_tools::decide("promtool", false, Some("1")).unwrap_err();
    assert!(err.contains("FACTORIO_ISR_REQUIRE_PROMTOOL=1"), "{err}");
}

/// CI keeps checking the Prometheus files: `.ci/run` requires the Prometheus tools.
#[test]
fn ci_requires_the_prometheus_tools() {
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"))
        .unwrap_or_else(|e| panic!(".ci/run: {e}"));
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("export {}=1", prom_tools::REQUIRE_ENV)),
        ".ci/run must export {}=1",
        prom_tools::REQUIRE_ENV
    );
}

/// The `LICENSE` file is the license `Cargo.toml` declares.
#[test]
fn the_license_file_matches_cargo_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.lines().any(|l| l.trim() == r#"license = "MIT""#),
        "Cargo.toml no longer says license = \"MIT\": update LICENSE and this test"
    );
    let license =
        std::fs::read_to_string(root.join("LICENSE")).unwrap_or_else(|e| panic!("LICENSE: {e}"));
    assert!(license.starts_with("MIT License\n"), "{license}");
    assert!(license.contains("Copyright (c) The factorio-isr authors"));
    assert!(license.contains("THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND"));
}

#[test]
fn the_compose_file_wires_loki_and_the_collector_example() {
    let compose = read("docker-compose.yml");
    let isr = yaml_block(&compose, "factorio-isr").join("\n");
    assert!(isr.contains("LOKI_URL: http://loki:3100"));
    let loki = yaml_block(&compose, "loki").join("\n");
    assert!(loki.contains("image: grafana/loki:3."), "{loki}");
    assert!(loki.contains("127.0.0.1:3100:3100"));
    let grafana = yaml_block(&compose, "grafana").join("\n");
    assert!(grafana.contains("- loki"));
    // Grafana finds Loki where compose runs it.
    let datasource = read("grafana/provisioning/datasources/loki.yml");
    assert_plain_yaml("datasources/loki.yml", &datasource);
    assert!(datasource.contains("apiVersion: 1"));
    assert!(datasource.contains("type: loki"));
    assert!(datasource.contains("url: http://loki:3100"));
    // The collector: OTLP in, Loki and Elasticsearch out, in a logs pipeline.
    let collector = yaml_block(&compose, "otel-collector").join("\n");
    assert!(collector.contains("./otel-collector/config.yaml:/etc/otelcol-contrib/config.yaml"));
    assert!(collector.contains("- collector"), "not behind a profile");
    let config = read("otel-collector/config.yaml");
    assert_plain_yaml("otel-collector/config.yaml", &config);
    for needle in [
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317",
        "  otlphttp/loki:\n    endpoint: http://loki:3100/otlp",
        "  elasticsearch:\n    endpoints:\n      - http://elasticsearch:9200",
        "    logs:\n      receivers:\n        - otlp",
        "      exporters:\n        - otlphttp/loki\n        - elasticsearch",
    ] {
        assert!(
            config.contains(needle),
            "the collector config lacks {needle:?}"
        );
    }
}
