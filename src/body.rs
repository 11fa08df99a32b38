//! Request bodies: content-type rules, size limit, and FastAPI-shaped 422s.
//!
//! JSON routes read the body as a JSON object and pick fields by hand (see
//! [`Fields`]), so a missing field, a wrong type and an invalid value each
//! get the contract's `{"detail": [{"loc", "msg", "type"}]}` entry rather
//! than serde's one-line message.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::error::{Error, FieldError};

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

/// A JSON object body (`Content-Type: application/json`, else 415).
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&content_type(&req)) {
            return Err(Error::UnsupportedMediaType("application/json"));
        }
        let bytes = read_bytes(req, state).await?;
        parse_json_object(&bytes).map(Self)
    }
}

/// An OAuth 2.0 form has a handful of fields; thousands are an attack on
/// the parser, not a request.
const MAX_FORM_FIELDS: usize = 32;

fn too_many_parameters() -> Error {
    Error::Grant(
        crate::error::GrantError::InvalidRequest,
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
                        crate::error::GrantError::InvalidRequest,
                        format!("Parameter {k:?} was sent more than once"),
                    ));
                }
            }
            Ok(Self(map))
        } else if is_json(&ct) {
            let bytes = read_bytes(req, state).await?;
            let object = parse_json_object(&bytes)?;
            // The same bound as the form (found by the request fuzzer: the
            // JSON form of these endpoints had none).
            if object.len() > MAX_FORM_FIELDS {
                return Err(too_many_parameters());
            }
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
        self.errors.push(crate::model::field_error(name, msg));
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
