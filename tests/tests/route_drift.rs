//! The routes in `template.yaml`, the `cargo lambda watch` router table in the workspace
//! `Cargo.toml` and the functions' own routers must agree, route by route and function by
//! function. A route added in one place only fails this test.

use std::collections::BTreeSet;

use jarvis_tests::workspace_root;
use serde_norway::Value as Yaml;

/// `(METHOD, path, function binary)`
type Route = (String, String, String);

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).expect("workspace file readable")
}

/// Routes declared as `HttpApi` events of `AWS::Serverless::Function` resources.
fn template_routes(template: &str) -> BTreeSet<Route> {
    let doc: Yaml = serde_norway::from_str(template).expect("template.yaml parses");
    let resources = doc["Resources"].as_mapping().expect("Resources mapping");
    let mut routes = BTreeSet::new();
    for (_, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("every function names its Binary in Metadata.BuildProperties")
            .to_owned();
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            let method = props["Method"].as_str().expect("Method").to_uppercase();
            let path = props["Path"].as_str().expect("Path").to_owned();
            routes.insert((method, path, function.clone()));
        }
    }
    routes
}

/// Routes of `[workspace.metadata.lambda.watch.router]`, in its per-method form.
fn watch_routes(cargo_toml: &str) -> BTreeSet<Route> {
    let doc: toml::Table = toml::from_str(cargo_toml).expect("Cargo.toml parses");
    let router = doc["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("router table");
    let mut routes = BTreeSet::new();
    for (path, target) in router {
        let entries = target
            .as_array()
            .expect("routes are listed per method: [{ method, function }]");
        for entry in entries {
            let method = entry["method"].as_str().expect("method").to_uppercase();
            let function = entry["function"].as_str().expect("function").to_owned();
            routes.insert((method, path.clone(), function));
        }
    }
    routes
}

/// Routes the functions' own routers serve, from the OpenAPI documents they generate.
fn function_routes() -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    for function in jarvis_local::functions() {
        let doc = serde_json::to_value(function.api.into_openapi()).expect("openapi JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            let item = item.as_object().expect("path item");
            for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                if item.contains_key(method) {
                    routes.insert((
                        method.to_uppercase(),
                        path.clone(),
                        function.name.to_owned(),
                    ));
                }
            }
        }
    }
    routes
}

/// Every disagreement between the three sources, one line each.
fn drift(
    template: &BTreeSet<Route>,
    watch: &BTreeSet<Route>,
    functions: &BTreeSet<Route>,
) -> Vec<String> {
    let all: BTreeSet<&Route> = template.iter().chain(watch).chain(functions).collect();
    let mut problems = Vec::new();
    for route in all {
        let missing: Vec<&str> = [
            ("template.yaml", template),
            ("the cargo lambda watch router in Cargo.toml", watch),
            ("the functions' routers", functions),
        ]
        .into_iter()
        .filter(|(_, set)| !set.contains(route))
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            let (method, path, function) = route;
            problems.push(format!(
                "{method} {path} -> {function} is missing from {}",
                missing.join(" and ")
            ));
        }
    }
    problems
}

#[test]
fn routes_agree_across_template_watch_router_and_functions() {
    let template = template_routes(&read("template.yaml"));
    let watch = watch_routes(&read("Cargo.toml"));
    let functions = function_routes();
    assert!(!functions.is_empty(), "the functions serve routes");
    let problems = drift(&template, &watch, &functions);
    assert!(problems.is_empty(), "route drift:\n{}", problems.join("\n"));
}

#[test]
fn a_route_added_only_to_the_template_is_reported() {
    let template = read("template.yaml").replace(
        "            Path: /version\n",
        "            Path: /version-2\n",
    );
    let problems = drift(
        &template_routes(&template),
        &watch_routes(&read("Cargo.toml")),
        &function_routes(),
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("GET /version-2 -> system") && p.contains("Cargo.toml")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("GET /version -> system") && p.contains("template.yaml")),
        "{problems:?}"
    );
}

#[test]
fn a_route_added_only_to_a_function_is_reported() {
    let mut functions = function_routes();
    functions.insert(("POST".into(), "/health".into(), "system".into()));
    let problems = drift(
        &template_routes(&read("template.yaml")),
        &watch_routes(&read("Cargo.toml")),
        &functions,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("POST /health"), "{problems:?}");
}

#[test]
fn a_route_mapped_to_another_function_in_the_watch_router_is_reported() {
    let cargo = read("Cargo.toml").replace(
        r#""/version" = [{ method = "GET", function = "system" }]"#,
        r#""/version" = [{ method = "GET", function = "archive" }]"#,
    );
    let problems = drift(
        &template_routes(&read("template.yaml")),
        &watch_routes(&cargo),
        &function_routes(),
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn every_template_function_builds_the_binary_it_names() {
    let doc: Yaml = serde_norway::from_str(&read("template.yaml")).expect("parses");
    for (name, resource) in doc["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name:?}"
        );
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary");
        let code_uri = resource["Properties"]["CodeUri"].as_str().expect("CodeUri");
        let manifest = read(&format!("{code_uri}/Cargo.toml"));
        let manifest: toml::Table = toml::from_str(&manifest).expect("crate manifest parses");
        let bins = manifest["bin"].as_array().expect("[[bin]] declared");
        assert!(
            bins.iter().any(|b| b["name"].as_str() == Some(binary)),
            "{code_uri} builds no binary named {binary}"
        );
    }
}

/// Least privilege: every function may only read and write items (no scans, deletes or
/// table administration), reach the secret and nothing else; every function but sync —
/// which merges any document a peer sends — is confined to the partitions it uses. The AI
/// and chat functions alone may also invoke Bedrock foundation models (and inference
/// profiles) of their own region, nothing else of Bedrock; the chat functions alone may
/// read, write and delete objects under `attachments/` of the attachments bucket; the
/// realtime function, and the functions that publish changes, may manage the connections of
/// this stack's WebSocket API stage and no other; the functions that search the knowledge
/// base may query its keyword table, and the knowledge functions alone write it.
#[test]
fn every_function_policy_is_confined_to_items_partitions_and_the_secret() {
    const ALLOWED: [&str; 4] = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
    ];
    let doc: Yaml = serde_norway::from_str(&read("template.yaml")).expect("parses");
    for (name, resource) in doc["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().expect("name");
        let statements: Vec<&Yaml> = resource["Properties"]["Policies"]
            .as_sequence()
            .expect("explicit policies")
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().expect("statements").iter())
            .collect();
        let mut reads_secret = false;
        for statement in statements {
            let actions: Vec<&str> = match &statement["Action"] {
                Yaml::String(one) => vec![one.as_str()],
                Yaml::Sequence(many) => many.iter().filter_map(Yaml::as_str).collect(),
                other => panic!("{name}: unexpected Action {other:?}"),
            };
            let target = format!("{:?}", statement["Resource"]);
            assert!(!target.contains("\"*\""), "{name}: a wildcard resource");
            let calls_models = [
                "AiFunction",
                "ChatFunction",
                "ChatStreamFunction",
                "RealtimeFunction",
                "KnowledgeFunction",
                "KnowledgeWorkerFunction",
                "AgentsWorkerFunction",
            ];
            if calls_models.contains(&name)
                && actions
                    == [
                        "bedrock:InvokeModel",
                        "bedrock:InvokeModelWithResponseStream",
                    ]
            {
                assert!(
                    target.contains("foundation-model/*") && target.contains("${AWS::Region}"),
                    "{name}: Bedrock beyond this region's models: {target}"
                );
                continue;
            }
            let converses = name.starts_with("Chat") || name == "RealtimeFunction";
            if converses && actions == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] {
                assert!(
                    target.contains("AttachmentsBucket") && target.contains("/attachments/*"),
                    "{name}: objects beyond the attachments: {target}"
                );
                continue;
            }
            let knows = name.starts_with("Knowledge");
            if knows && actions.iter().all(|a| a.starts_with("s3:")) {
                assert!(
                    target.contains("AttachmentsBucket") && target.contains("/knowledge/*"),
                    "{name}: objects beyond the knowledge base's files: {target}"
                );
                continue;
            }
            let searches = knows || converses || name == "AgentsWorkerFunction";
            if searches && actions.iter().all(|a| a.starts_with("s3vectors:")) {
                assert!(
                    target.contains("KnowledgeVectorIndex.IndexArn"),
                    "{name}: vectors beyond the knowledge index: {target}"
                );
                continue;
            }
            if searches && target.contains("KnowledgeKeywords") {
                let may: &[&str] = if knows {
                    &["dynamodb:Query", "dynamodb:BatchWriteItem"]
                } else {
                    &["dynamodb:Query"]
                };
                assert_eq!(actions, may, "{name}: the keyword table");
                continue;
            }
            // Who sends to which queue: ingestion jobs (new archive entries included) to the
            // knowledge base's, runs to the agents'.
            let queues: [(&str, &[&str]); 6] = [
                ("KnowledgeFunction", &["KnowledgeQueue.Arn"]),
                ("KnowledgeWorkerFunction", &["KnowledgeQueue.Arn"]),
                ("ArchiveFunction", &["KnowledgeQueue.Arn"]),
                ("AgentsFunction", &["AgentQueue.Arn"]),
                (
                    "AgentsWorkerFunction",
                    &["AgentQueue.Arn", "KnowledgeQueue.Arn"],
                ),
                (
                    "AutomationsDueFunction",
                    &["AgentQueue.Arn", "KnowledgeQueue.Arn"],
                ),
            ];
            if actions == ["sqs:SendMessage"]
                && let Some((_, allowed)) = queues.iter().find(|(n, _)| *n == name)
            {
                assert!(
                    allowed.iter().any(|queue| target.contains(queue)),
                    "{name}: messages to another queue: {target}"
                );
                continue;
            }
            let publishes = [
                "RealtimeFunction",
                "ArchiveFunction",
                "CrdtFunction",
                "AgentsFunction",
                "AgentsWorkerFunction",
                "AutomationsDueFunction",
                "TradingFunction",
            ];
            if publishes.contains(&name) && actions == ["execute-api:ManageConnections"] {
                assert!(
                    target.contains("${WebSocketApi}/live/*/@connections/*"),
                    "{name}: connections beyond this WebSocket API's stage: {target}"
                );
                continue;
            }
            // The expiry purge scans for expired documents and deletes them.
            if name == "JobsFunction" && actions == ["dynamodb:Scan", "dynamodb:DeleteItem"] {
                assert!(target.contains("DocumentsTable.Arn"), "{name}: {target}");
                continue;
            }
            for action in &actions {
                assert!(ALLOWED.contains(action), "{name} may {action}");
            }
            if actions == ["secretsmanager:GetSecretValue"] {
                assert!(
                    target.contains("Secrets"),
                    "{name}: another secret: {target}"
                );
                reads_secret = true;
                continue;
            }
            assert!(target.contains("DocumentsTable"), "{name}: {target}");
            let confined =
                !statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                    .is_null();
            // Sync, which merges any document a peer sends, and the system jobs, whose sync
            // rounds do the same and whose purge reaches every partition.
            assert!(
                confined || name == "SyncFunction" || name == "JobsFunction",
                "{name}: table access not confined to its partitions"
            );
        }
        assert!(
            reads_secret,
            "{name} cannot read the secret it verifies tokens with"
        );
    }
}

/// The OpenAPI document only names security schemes it declares.
#[test]
fn every_security_requirement_names_a_declared_scheme() {
    let (_, openapi) = jarvis_local::routes_and_openapi();
    let doc = serde_json::to_value(&openapi).expect("openapi JSON");
    let declared = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let mut named = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    named += 1;
                    assert!(
                        declared.contains_key(scheme),
                        "{method} {path} names the undeclared scheme {scheme}"
                    );
                }
            }
        }
    }
    assert!(named > 0, "the sync routes name the peer token");
}

/// Every operation documents the answers the request layers give every route, and every
/// `$ref` in the document resolves (a schema type used only in a parameter is inlined).
#[test]
fn every_operation_documents_the_shared_answers_and_every_reference_resolves() {
    let (_, openapi) = jarvis_local::routes_and_openapi();
    let doc = serde_json::to_value(&openapi).expect("openapi JSON");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            operations += 1;
            let responses = operation["responses"].as_object().expect("responses");
            let secured = operation["security"]
                .as_array()
                .is_some_and(|requirements| !requirements.is_empty());
            let mut expected = vec!["400", "429", "500", "503"];
            if secured {
                expected.push("401");
            }
            if operation.get("requestBody").is_some() {
                expected.extend(["413", "415"]);
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    assert!(operations >= 35, "{operations} operations");

    fn references(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| references(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    references(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{target} does not resolve"
        );
    }
}

/// Functions are merged into one OpenAPI document (and one `jarvis-local`): two functions
/// naming different schemas alike would leave one of them described by the other's rules.
#[test]
fn no_two_functions_give_one_schema_name_different_rules() {
    let mut seen: std::collections::BTreeMap<String, (String, serde_json::Value)> =
        std::collections::BTreeMap::new();
    for function in jarvis_local::functions() {
        let doc = serde_json::to_value(function.api.into_openapi()).expect("openapi JSON");
        let Some(schemas) = doc["components"]["schemas"].as_object() else {
            continue;
        };
        for (name, schema) in schemas {
            match seen.get(name) {
                Some((other, earlier)) => assert_eq!(
                    earlier, schema,
                    "{} and {other} both name a schema {name}, with different rules",
                    function.name
                ),
                None => {
                    seen.insert(name.clone(), (function.name.to_owned(), schema.clone()));
                }
            }
        }
    }
}

/// The WebSocket API's routes in `template.yaml` are the realtime function's, each on the
/// integration its [`Invocation`](jarvis_fn_realtime::Invocation) names, selected by the
/// expression the local gateway applies; every route reaches the function.
#[test]
fn websocket_routes_agree_between_the_template_and_the_realtime_function() {
    use jarvis_fn_realtime::{Invocation, ROUTE_SELECTION, ROUTES};
    let doc: Yaml = serde_norway::from_str(&read("template.yaml")).expect("parses");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    let api = &doc["Resources"]["WebSocketApi"]["Properties"];
    assert_eq!(api["ProtocolType"].as_str(), Some("WEBSOCKET"));
    assert_eq!(
        api["RouteSelectionExpression"].as_str(),
        Some(ROUTE_SELECTION)
    );
    let mut declared = BTreeSet::new();
    for (_, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::ApiGatewayV2::Route") {
            continue;
        }
        let properties = &resource["Properties"];
        let key = properties["RouteKey"]
            .as_str()
            .expect("RouteKey")
            .to_owned();
        let target = format!("{:?}", properties["Target"]);
        let invocation = if target.contains("${WebSocketEventIntegration}") {
            "Event"
        } else {
            assert!(
                target.contains("${WebSocketProxyIntegration}"),
                "{key}: {target}"
            );
            "Proxy"
        };
        assert!(
            format!("{:?}", properties["ApiId"]).contains("WebSocketApi"),
            "{key}"
        );
        declared.insert((key, invocation));
    }
    let expected: BTreeSet<(String, &str)> = ROUTES
        .iter()
        .map(|route| {
            let invocation = match route.invocation {
                Invocation::Proxy => "Proxy",
                Invocation::Event => "Event",
            };
            (route.key.to_owned(), invocation)
        })
        .collect();
    assert_eq!(declared, expected, "template routes vs the function's");
    let deployment = format!("{:?}", doc["Resources"]["WebSocketDeployment"]["DependsOn"]);
    for (name, resource) in resources {
        if resource["Type"].as_str() == Some("AWS::ApiGatewayV2::Route") {
            let name = name.as_str().expect("name");
            assert!(deployment.contains(name), "the deployment waits for {name}");
        }
    }
    for integration in ["WebSocketProxyIntegration", "WebSocketEventIntegration"] {
        let uri = format!(
            "{:?}",
            doc["Resources"][integration]["Properties"]["IntegrationUri"]
        );
        assert!(uri.contains("RealtimeFunction.Arn"), "{integration}: {uri}");
    }
    let event = &doc["Resources"]["WebSocketEventIntegration"]["Properties"];
    assert_eq!(
        event["RequestParameters"]["integration.request.header.X-Amz-Invocation-Type"].as_str(),
        Some("'Event'"),
        "the asynchronous routes are invoked asynchronously"
    );
    let invoke = &doc["Resources"]["RealtimeFunction"]["Properties"]["EventInvokeConfig"];
    assert_eq!(
        invoke["MaximumRetryAttempts"].as_u64(),
        Some(0),
        "an asynchronous chat.send is never retried into a second message"
    );
    let permission = &doc["Resources"]["RealtimeInvokePermission"]["Properties"];
    assert_eq!(
        permission["Principal"].as_str(),
        Some("apigateway.amazonaws.com")
    );
    assert!(format!("{:?}", doc["Outputs"]["WebSocketUrl"]["Value"]).contains("wss://"));
}

/// Keyword search on AWS needs both halves of the index: every function given the vector
/// index is given the keyword table too, and the table has the string keys `pk` and `sk`
/// the index writes (and `knowledge_aws` creates in DynamoDB Local).
#[test]
fn every_function_that_searches_vectors_also_has_the_keyword_table() {
    let doc: Yaml = serde_norway::from_str(&read("template.yaml")).expect("parses");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    let mut searching = 0;
    for (name, resource) in resources {
        let vars = &resource["Properties"]["Environment"]["Variables"];
        if vars["JARVIS_KNOWLEDGE_VECTOR_INDEX_ARN"].is_null() {
            continue;
        }
        searching += 1;
        assert!(
            format!("{:?}", vars["JARVIS_KNOWLEDGE_KEYWORD_TABLE"]).contains("KnowledgeKeywords"),
            "{name:?} searches vectors without the keyword table"
        );
    }
    assert!(
        searching >= 5,
        "knowledge, its worker, both chat functions and the agents' worker"
    );
    let table = &doc["Resources"]["KnowledgeKeywords"]["Properties"];
    let keys: Vec<(&str, &str)> = table["KeySchema"]
        .as_sequence()
        .expect("KeySchema")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().expect("name"),
                k["KeyType"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    for definition in table["AttributeDefinitions"]
        .as_sequence()
        .expect("definitions")
    {
        assert_eq!(definition["AttributeType"].as_str(), Some("S"));
    }
}

/// The system jobs' schedules in `template.yaml` are the Rust table's, one `ScheduleV2`
/// event per job: the same expression, time zone, input, retry policy and dead-letter
/// queue, run as the scheduler role; every expression parses as AWS's dialect.
#[test]
fn the_system_job_schedules_agree_between_the_template_and_the_rust_table() {
    let doc: Yaml = serde_norway::from_str(&read("template.yaml")).expect("parses");
    let mut in_template = BTreeSet::new();
    let functions: BTreeSet<&str> = jarvis_fn_jobs::SYSTEM_JOBS
        .iter()
        .map(|j| j.function)
        .collect();
    for function in &functions {
        let events = doc["Resources"][*function]["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{function}'s events"));
        for (id, event) in events {
            assert_eq!(event["Type"].as_str(), Some("ScheduleV2"), "{id:?}");
            let p = &event["Properties"];
            let input: serde_json::Value =
                serde_json::from_str(p["Input"].as_str().expect("Input")).expect("JSON input");
            let fire: jarvis_fn_jobs::Fire = serde_json::from_value(input).expect("a job's input");
            let job = jarvis_fn_jobs::job(&fire.job)
                .unwrap_or_else(|| panic!("{id:?} runs {:?}, which no job is", fire.job));
            assert_eq!(
                job.function, *function,
                "{} runs in another function",
                job.name
            );
            assert_eq!(
                p["ScheduleExpression"].as_str(),
                Some(job.schedule),
                "{}",
                job.name
            );
            assert_eq!(
                p["ScheduleExpressionTimezone"].as_str(),
                Some(job.time_zone),
                "{}",
                job.name
            );
            let retry = &p["RetryPolicy"];
            assert_eq!(
                retry["MaximumRetryAttempts"].as_u64(),
                Some(u64::from(job.retries)),
                "{}",
                job.name
            );
            assert_eq!(
                retry["MaximumEventAgeInSeconds"].as_u64(),
                Some(u64::from(job.max_age_secs)),
                "{}",
                job.name
            );
            assert!(
                format!("{:?}", p["DeadLetterConfig"]).contains("JobsDeadLetters"),
                "{}",
                job.name
            );
            assert!(
                format!("{:?}", p["RoleArn"]).contains("JobsSchedulerRole"),
                "{}",
                job.name
            );
            job.parsed().unwrap_or_else(|e| panic!("{}: {e}", job.name));
            assert!(
                in_template.insert(job.name),
                "{} is scheduled twice",
                job.name
            );
        }
    }
    let in_rust: BTreeSet<&str> = jarvis_fn_jobs::SYSTEM_JOBS.iter().map(|j| j.name).collect();
    assert_eq!(
        in_template, in_rust,
        "every job in the table is scheduled, and only those"
    );

    // The scheduler's role invokes the jobs' functions and reaches their dead-letter queue
    // only.
    let role = &doc["Resources"]["JobsSchedulerRole"]["Properties"];
    assert!(format!("{:?}", role["AssumeRolePolicyDocument"]).contains("scheduler.amazonaws.com"));
    let statements: Vec<(String, String)> = role["Policies"]
        .as_sequence()
        .expect("policies")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_sequence()
                .expect("statements")
                .iter()
        })
        .map(|s| (format!("{:?}", s["Action"]), format!("{:?}", s["Resource"])))
        .collect();
    assert_eq!(statements.len(), 2, "{statements:?}");
    for (action, resource) in &statements {
        if action.contains("lambda:InvokeFunction") {
            for function in &functions {
                assert!(
                    resource.contains(&format!("{function}.Arn")),
                    "{action} on {resource}"
                );
            }
            assert_eq!(
                resource.matches(".Arn").count(),
                functions.len(),
                "only the jobs' functions: {resource}"
            );
        } else {
            assert!(action.contains("sqs:SendMessage"), "{action}");
            assert!(
                resource.contains("JobsDeadLetters.Arn"),
                "{action} on {resource}"
            );
        }
    }
}
