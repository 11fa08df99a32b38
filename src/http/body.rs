//! Request bodies: content-type rules, size limit, and FastAPI-shaped 422s.
//!
//! JSON routes read the body as a JSON object and pick fields by hand (see
//! [`Fields`]), so a missing field, a wrong type and an invalid value each
//! get the contract's `{"detail": [{"loc", "msg", "type"}]}` entry rather
//! than serde's one-line message.
//!
//! Control characters (C0 with NUL, DEL, C1) are refused here, once, with
//! a 422, in every string of every JSON body and form and in the query
//! strings of the list routes ([`query_pairs`]): no handler has to
//! remember it, and none reaches a database (PostgreSQL refuses NUL in
//! text with an error that would be a 500). Secrets are the exception, see
//! [`SECRET_FIELDS`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::http::error::{Error, FieldError};

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn is_json(ct: &str) -> bool {
    ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
}

async fn read_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Error::PayloadTooLarge
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
        other => Error::BadRequest(format!("Could not read the request body: {other}")),
    })
}

fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::field(
            &["body"],
            "Input should be a JSON object",
            "model_attributes_type",
        )),
        Err(e) => Err(Error::Validation(vec![FieldError {
            loc: vec!["body".to_owned(), e.column().to_string()],
            msg: "JSON decode error".to_owned(),
            kind: "json_invalid".to_owned(),
        }])),
    }
}

/// Fields whose values are never stored or logged, only hashed or compared:
/// passwords and tokens. They are not checked for control characters, so a
/// password accepted before this rule still signs its owner in; new
/// passwords are checked by [`crate::domain::profile::check_new_password`].
pub const SECRET_FIELDS: &[&str] = &[
    "password",
    "current_password",
    "new_password",
    "refresh_token",
    "token",
];

/// Whether `s` holds a control character (Unicode `Cc`: C0, DEL, C1).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn control_error(loc: Vec<String>) -> FieldError {
    FieldError {
        loc,
        msg: "String should not contain control characters".to_owned(),
        kind: "string_control_character".to_owned(),
    }
}

/// Every string below `value` (object keys included) that holds a control
/// character, as a 422 entry at its location.
fn find_controls(value: &Value, loc: &mut Vec<String>, errors: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if has_control(s) => errors.push(control_error(loc.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                loc.push(i.to_string());
                find_controls(item, loc, errors);
                loc.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                loc.push(k.clone());
                if has_control(k) {
                    errors.push(control_error(loc.clone()));
                } else {
                    find_controls(v, loc, errors);
                }
                loc.pop();
            }
        }
        _ => {}
    }
}

/// `Err(422)` if any string of the body's top-level `object` (other than a
/// secret) holds a control character.
fn refuse_controls(object: &Map<String, Value>) -> Result<(), Error> {
    let mut errors = Vec::new();
    let mut loc = vec!["body".to_owned()];
    for (k, v) in object {
        loc.push(k.clone());
        if has_control(k) {
            errors.push(control_error(loc.clone()));
        } else if !SECRET_FIELDS.contains(&k.as_str()) {
            find_controls(v, &mut loc, &mut errors);
        }
        loc.pop();
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// The pairs of a query string, decoded; `Err(422)` (at `["query", name]`)
/// when a name or value holds a control character.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Error> {
    let mut errors = Vec::new();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (k, v) in &pairs {
        if has_control(k) || has_control(v) {
            errors.push(control_error(vec!["query".to_owned(), k.clone()]));
        }
    }
    if errors.is_empty() {
        Ok(pairs)
    } else {
        Err(Error::Validation(errors))
    }
}

/// A JSON object body (`Content-Type: application/json`, else 415).
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&content_type(&req)) {
            return Err(Error::UnsupportedMediaType("application/json"));
        }
        let bytes = read_bytes(req, state).await?;
        let object = parse_json_object(&bytes)?;
        refuse_controls(&object)?;
        Ok(Self(object))
    }
}

/// An OAuth 2.0 form has a handful of fields; thousands are an attack on
/// the parser, not a request.
const MAX_FORM_FIELDS: usize = 32;

fn too_many_parameters() -> Error {
    Error::Grant(
        crate::http::error::GrantError::InvalidRequest,
        format!("Too many parameters (at most {MAX_FORM_FIELDS})"),
    )
}

/// The parameters of an OAuth 2.0 endpoint: a form body, or — since posting
/// JSON to a form endpoint is the most common mistake — a JSON object of
/// string fields. A parameter sent twice is refused (RFC 6749 §3.2).
pub struct OAuthParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for OAuthParams {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = content_type(&req);
        if ct == "application/x-www-form-urlencoded" {
            let bytes = read_bytes(req, state).await?;
            let mut map = HashMap::new();
            for (n, (k, v)) in form_urlencoded::parse(&bytes).enumerate() {
                if n >= MAX_FORM_FIELDS {
                    return Err(too_many_parameters());
                }
                if map.insert(k.to_string(), v.into_owned()).is_some() {
                    return Err(Error::Grant(
                        crate::http::error::GrantError::InvalidRequest,
                        format!("Parameter {k:?} was sent more than once"),
                    ));
                }
            }
            let object = map
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())));
            refuse_controls(&object.collect())?;
            Ok(Self(map))
        } else if is_json(&ct) {
            let bytes = read_bytes(req, state).await?;
            let object = parse_json_object(&bytes)?;
            // The same bound as the form (found by the request fuzzer: the
            // JSON form of these endpoints had none).
            if object.len() > MAX_FORM_FIELDS {
                return Err(too_many_parameters());
            }
            refuse_controls(&object)?;
            let mut map = HashMap::new();
            for (k, v) in object {
                match v {
                    Value::String(s) => {
                        map.insert(k, s);
                    }
                    Value::Null => {}
                    _ => {
                        return Err(Error::field(
                            &["body", &k],
                            "Input should be a valid string",
                            "string_type",
                        ));
                    }
                }
            }
            Ok(Self(map))
        } else {
            Err(Error::UnsupportedMediaType(
                "application/x-www-form-urlencoded",
            ))
        }
    }
}

/// Typed access to a JSON object's fields, collecting every problem so one
/// 422 lists them all.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: Vec::new(),
        }
    }

    /// A required string field.
    pub fn required_str(&mut self, name: &str) -> Option<&'a str> {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Field required",
                    "missing",
                ));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
        }
    }

    /// An optional string field: absent → `None`.
    pub fn optional_str(&mut self, name: &str) -> Option<&'a str> {
        match self.map.get(name) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
        }
    }

    /// An optional, nullable string field: absent → `None`,
    /// `null` → `Some(None)`.
    pub fn nullable_str(&mut self, name: &str) -> Option<Option<&'a str>> {
        match self.map.get(name) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
        }
    }

    /// An optional list of strings: absent → `None`.
    pub fn optional_str_list(&mut self, name: &str) -> Option<Vec<&'a str>> {
        match self.map.get(name) {
            None => None,
            Some(Value::Array(items)) => {
                let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                if strings.is_none() {
                    self.errors.push(FieldError::new(
                        &["body", name],
                        "Input should be a list of strings",
                        "list_type",
                    ));
                }
                strings
            }
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid list",
                    "list_type",
                ));
                None
            }
        }
    }

    /// An optional boolean: absent → `None`.
    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        match self.map.get(name) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid boolean",
                    "bool_type",
                ));
                None
            }
        }
    }

    /// Records a rule violation on `name`.
    pub fn invalid(&mut self, name: &str, msg: String) {
        self.errors
            .push(crate::domain::profile::field_error(name, msg));
    }

    /// `Err(422)` if anything was wrong.
    pub fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}
