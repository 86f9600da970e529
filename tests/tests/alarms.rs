//! The alarms in `template.yaml` cover every function and the shared resources, and all of
//! them reach the one alarm topic: a function added without its alarms fails here.

use serde_norway::Value as Yaml;
use serde_norway::value::TaggedValue;

use jarvis_tests::workspace_root;

fn template() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    serde_norway::from_str(&text).expect("parses")
}

/// The logical id a `!Ref` names.
fn reference(value: &Yaml) -> Option<&str> {
    match value {
        Yaml::Tagged(tagged) => {
            let TaggedValue { tag, value } = tagged.as_ref();
            (tag == "Ref").then(|| value.as_str()).flatten()
        }
        _ => None,
    }
}

fn resources_of<'a>(doc: &'a Yaml, kind: &str) -> Vec<(&'a str, &'a Yaml)> {
    doc["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .filter_map(|(id, r)| Some((id.as_str()?, r)))
        .collect()
}

/// Every metric an alarm reads: its own, or each `MetricStat` of its metric math.
fn metrics(alarm: &Yaml) -> Vec<&Yaml> {
    let props = &alarm["Properties"];
    match props["Metrics"].as_sequence() {
        Some(queries) => queries
            .iter()
            .filter(|q| !q["MetricStat"].is_null())
            .map(|q| &q["MetricStat"]["Metric"])
            .collect(),
        None => vec![props],
    }
}

fn dimension<'a>(metric: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    metric["Dimensions"]
        .as_sequence()?
        .iter()
        .find(|d| d["Name"].as_str() == Some(name))
        .map(|d| &d["Value"])
}

/// Alarms reading `metric_name` of resource `id` through dimension `by`.
fn alarms_on<'a>(doc: &'a Yaml, id: &str, by: &str, metric_name: &str) -> Vec<&'a Yaml> {
    resources_of(doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, alarm)| alarm)
        .filter(|alarm| {
            metrics(alarm).iter().any(|m| {
                m["MetricName"].as_str() == Some(metric_name)
                    && dimension(m, by).and_then(reference) == Some(id)
            })
        })
        .collect()
}

fn number(value: &Yaml) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

#[test]
fn every_function_has_error_rate_throttle_and_duration_alarms() {
    let doc = template();
    let default_timeout = number(&doc["Globals"]["Function"]["Timeout"]);
    let functions = resources_of(&doc, "AWS::Serverless::Function");
    assert!(!functions.is_empty());
    for (id, function) in functions {
        let timeout = function["Properties"]["Timeout"]
            .as_f64()
            .unwrap_or(default_timeout);

        let rate = alarms_on(&doc, id, "FunctionName", "Errors");
        assert_eq!(rate.len(), 1, "{id}: one error-rate alarm");
        let reads_invocations = metrics(rate[0]).iter().any(|m| {
            m["MetricName"].as_str() == Some("Invocations")
                && dimension(m, "FunctionName").and_then(reference) == Some(id)
        });
        assert!(
            reads_invocations,
            "{id}: the error rate divides by invocations"
        );
        let rate = &rate[0]["Properties"];
        assert_eq!(number(&rate["Threshold"]), 5.0, "{id}: above 5 %");
        assert_eq!(number(&rate["DatapointsToAlarm"]), 3.0, "{id}: 3 of 5");
        assert_eq!(number(&rate["EvaluationPeriods"]), 5.0, "{id}: 3 of 5");

        let throttles = alarms_on(&doc, id, "FunctionName", "Throttles");
        assert_eq!(throttles.len(), 1, "{id}: one throttle alarm");

        let duration = alarms_on(&doc, id, "FunctionName", "Duration");
        assert_eq!(duration.len(), 1, "{id}: one duration alarm");
        let duration = &duration[0]["Properties"];
        assert_eq!(duration["ExtendedStatistic"].as_str(), Some("p99"), "{id}");
        assert_eq!(
            number(&duration["Threshold"]),
            timeout * 1000.0 * 0.8,
            "{id}: p99 above 80 % of its {timeout} s timeout"
        );
    }
}

#[test]
fn the_api_and_the_table_have_their_alarms() {
    let doc = template();
    assert_eq!(alarms_on(&doc, "HttpApi", "ApiId", "5xx").len(), 1);
    for metric in ["ReadThrottleEvents", "WriteThrottleEvents", "SystemErrors"] {
        assert_eq!(
            alarms_on(&doc, "DocumentsTable", "TableName", metric).len(),
            1,
            "{metric}"
        );
    }
}

#[test]
fn every_alarm_notifies_the_alarm_topic_which_emails_the_given_address() {
    let doc = template();
    let alarms = resources_of(&doc, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 18, "{} alarms", alarms.len());
    for (id, alarm) in alarms {
        let actions = alarm["Properties"]["AlarmActions"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{id}: no actions"));
        assert!(
            actions.iter().any(|a| reference(a) == Some("AlarmTopic")),
            "{id} does not notify AlarmTopic"
        );
    }
    let subscription = &doc["Resources"]["AlarmEmailSubscription"]["Properties"];
    assert_eq!(reference(&subscription["TopicArn"]), Some("AlarmTopic"));
    assert_eq!(reference(&subscription["Endpoint"]), Some("AlarmEmail"));
}
