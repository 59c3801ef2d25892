//! The deployment files stay in step with the code: the Elasticsearch index template maps every
//! key of the event JSON, and gives every shipped capture a type that fits the values the
//! shipped patterns produce (a `long` for an `int` capture, never a number type for text).

use std::path::PathBuf;

use factorio_isr::patterns::{self, FieldType};
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
