//! Real examples for the error bodies of `/openapi.json`.
//!
//! Swagger UI shows a response's example, or one made up from its schema:
//! `{"detail": "string"}` for every 401 and 403. The errors most routes
//! share are filled in here, once, from the strings the code answers with;
//! an operation whose error means something of its own (the 403 of closed
//! registration, the 400 of a wrong password) names it in its
//! `#[utoipa::path]` with `example = json!(...)`, and is left as it is.
//! `tests/api/ops.rs` checks that every error response ends up with an
//! example, and that the shared ones are what the server really answers.

use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{OpenApi, RefOr};
use warden_guard::AuthError;

use crate::http::error::FieldError;

/// The `$ref` names of the error bodies (`crate::http::routes`).
const DETAIL: &str = "#/components/schemas/Detail";
const VALIDATION: &str = "#/components/schemas/ValidationErrorBody";

/// The 401 bodies of every protected route, one per reason.
fn unauthorized() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            // Keys sort: this one, the tutorial's first answer, shows first.
            "absent",
            "No Authorization header",
            json!({ "detail": AuthError::Missing.detail() }),
        ),
        (
            "invalid",
            "A bad signature, a revoked session, a wrong issuer...",
            json!({ "detail": AuthError::Invalid.detail() }),
        ),
        (
            "expired",
            "The access token has expired: refresh it",
            json!({ "detail": AuthError::Expired.detail() }),
        ),
    ]
}

fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

/// The 422 body an operation gets for its most common mistake: a missing
/// body field, a bad query parameter or a path id that is no UUID.
fn validation(operation: &Operation) -> Value {
    let error = if operation.request_body.is_some() {
        // True of every JSON body route; a route names its own fields.
        FieldError::new(
            &["body"],
            "Input should be a JSON object",
            "model_attributes_type",
        )
    } else {
        let param = |name: &str| {
            operation.parameters.iter().flatten().any(|p| match p {
                RefOr::T(p) => p.name == name,
                RefOr::Ref(_) => false,
            })
        };
        if param("id") {
            FieldError::new(
                &["path", "id"],
                "Input should be a valid UUID",
                "uuid_parsing",
            )
        } else if param("limit") {
            FieldError::new(
                &["query", "limit"],
                "Input should be between 1 and 200",
                "less_than_equal",
            )
        } else {
            FieldError::new(
                &["query", "q"],
                "String should not contain control characters",
                "string_control_character",
            )
        }
    };
    json!({ "detail": [error] })
}

/// Whether the operation's body is a form (the token endpoints).
fn takes_form(operation: &Operation) -> bool {
    matches!(&operation.request_body, Some(RefOr::T(body))
        if body.content.contains_key("application/x-www-form-urlencoded"))
}

/// The shared examples for a response with `status` and body `schema`, or
/// none where the meaning is the operation's own.
fn shared(
    operation: &Operation,
    status: &str,
    schema: &str,
) -> Vec<(&'static str, &'static str, Value)> {
    let one = |value: Value| vec![("example", "", value)];
    match (status, schema) {
        ("401", DETAIL) => unauthorized(),
        ("403", DETAIL) => vec![(
            "missing_scope",
            "The token lacks the scope the route needs",
            json!({ "detail": AuthError::InsufficientScope(String::new()).detail() }),
        )],
        ("404", DETAIL) => one(detail("Not Found")),
        ("408", DETAIL) => one(detail("Request timed out")),
        ("409", DETAIL) => one(detail("Username or email already registered")),
        ("413", DETAIL) => one(detail("Request body is larger than 64 KiB")),
        ("415", DETAIL) => one(detail(if takes_form(operation) {
            "Unsupported media type: expected application/x-www-form-urlencoded"
        } else {
            "Unsupported media type: expected application/json"
        })),
        ("422", VALIDATION) => one(validation(operation)),
        ("429", DETAIL) => one(detail(
            "Too many failed login attempts; try again in 42 seconds",
        )),
        ("503", DETAIL) => one(detail("Server busy, retry shortly")),
        _ => Vec::new(),
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Fills in the shared error examples wherever a JSON error response has
/// none of its own.
pub fn add_error_examples(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            let snapshot = operation.clone();
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let Some(RefOr::T(content)) = response.content.get_mut("application/json") else {
                    continue;
                };
                if content.example.is_some() || !content.examples.is_empty() {
                    continue;
                }
                let schema = match &content.schema {
                    Some(RefOr::Ref(r)) => r.ref_location.as_str(),
                    _ => continue,
                };
                let mut examples = shared(&snapshot, status, schema);
                if examples.len() == 1 {
                    content.example = examples.pop().map(|(_, _, v)| v);
                } else {
                    for (name, summary, value) in examples {
                        content.examples.insert(
                            name.to_owned(),
                            ExampleBuilder::new()
                                .summary(summary)
                                .value(Some(value))
                                .into(),
                        );
                    }
                }
            }
        }
    }
}
