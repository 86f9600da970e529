//! The answers every route gets from the request layers, written into the OpenAPI document
//! once rather than on each route.
//!
//! Each route documents its own outcomes; [`document_shared_answers`] adds, where a route does
//! not already state them: 400 (a malformed header, parameter or body), 401 and 403 on routes
//! that need a credential, 413 and 415 on routes that take a body, 429 (rate limits), 500 and
//! 503. Each answer is the error envelope.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

/// Adds the shared answers to every operation of `openapi`.
pub fn document_shared_answers(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            document(operation);
        }
    }
}

fn document(operation: &mut Operation) {
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| {
            value
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    let mut answers = vec![(
        "400",
        "`bad_request`: a header, parameter or body field is malformed; `field` names it",
    )];
    if !schemes.is_empty() {
        answers.push((
            "401",
            "`unauthorized`: the credential is missing, malformed, expired or revoked",
        ));
    }
    if schemes.iter().any(|s| s != "peer_token") {
        answers.push((
            "403",
            "`forbidden`: the credential lacks the scope or role this route needs",
        ));
    }
    if operation.request_body.is_some() {
        answers.push((
            "413",
            "`payload_too_large`: the body is over the deployment's limit",
        ));
        answers.push((
            "415",
            "`unsupported_media_type`: the body is not `application/json`",
        ));
    }
    answers.extend([
        (
            "429",
            "`rate_limited` (or `locked_out`): retry after the `Retry-After` seconds",
        ),
        ("500", "`internal`: a fault on the server's side"),
        (
            "503",
            "`unavailable` (a dependency is down; retry later), `timeout` (the request took \
             longer than the deployment allows; retry with the same `Idempotency-Key`) or \
             `not_configured`",
        ),
    ]);
    let responses = &mut operation.responses.responses;
    for (status, description) in answers {
        responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                            .build(),
                    )
                    .build(),
            )
        });
    }
}

/// Closes the variants of every tagged union among `openapi`'s schemas (a `oneOf` of
/// objects each naming its variant in a one-value property — `type`, `name` — as serde's
/// internally tagged enums with `deny_unknown_fields` read them): `additionalProperties:
/// false` on each, which the derive leaves out for enum variants.
pub fn close_tagged_variants(openapi: &mut OpenApi) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::OneOf(union)) = schema else {
            continue;
        };
        for variant in &mut union.items {
            let RefOr::T(Schema::Object(object)) = variant else {
                continue;
            };
            let tagged = ["type", "name"]
                .iter()
                .any(|tag| match object.properties.get(*tag) {
                    Some(RefOr::T(Schema::Object(tag))) => tag
                        .enum_values
                        .as_ref()
                        .is_some_and(|values| values.len() == 1),
                    _ => false,
                });
            if tagged && object.additional_properties.is_none() {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}
