//! Request bodies and list queries: content-type rules, size limit, and
//! FastAPI-shaped 422s.
//!
//! Each body, form and list query is parsed into its typed struct, the one
//! its OpenAPI schema is derived from (`RegisterRequest`, `TokenRequest`,
//! `ListQuery`, ...). The struct's `read` (a [`FromJson`], [`FromForm`] or
//! [`FromQuery`] impl next to it) is its one parser: it asks a reader
//! ([`Fields`], [`Params`], [`QueryFields`]) for each field by name, so a
//! missing field, a wrong type and an invalid value each get the
//! contract's `{"detail": [{"loc", "msg", "type"}]}` entry (all of them,
//! in one 422) rather than serde's one-line message. The reader records
//! the names it was asked for: [`json_fields`], [`form_fields`] and
//! [`query_fields`] list what a parser accepts and requires, and a test
//! (`tests/api/ops.rs`) compares that with `/openapi.json`, so the
//! document and the parser cannot drift. A `read` therefore asks for
//! every field it accepts unconditionally, before any early return.
//!
//! Fields a struct does not define are ignored, as FastAPI does.
//!
//! Control characters (C0 with NUL, DEL, C1) are refused here, once, with
//! a 422, in every string of every JSON body and form (unknown fields
//! included) and in the query strings of the list routes
//! ([`query_pairs`]): no handler has to remember it, and none reaches a
//! database (PostgreSQL refuses NUL in text with an error that would be a
//! 500). Secrets are the exception, see [`SECRET_FIELDS`].

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
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Error> {
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

/// One field a parser reads, as its reader recorded it: what
/// [`json_fields`], [`form_fields`] and [`query_fields`] list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub required: bool,
    /// The JSON types a JSON body's field may have (`["string", "null"]`
    /// for a nullable string); empty for forms and queries, whose values
    /// are all strings.
    pub json_types: &'static [&'static str],
}

/// The fields a reader was asked for, each once, in the order asked.
#[derive(Debug, Default)]
struct Asked(Vec<FieldSpec>);

impl Asked {
    fn record(&mut self, name: &'static str, required: bool, json_types: &'static [&'static str]) {
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(f) => f.required |= required,
            None => self.0.push(FieldSpec {
                name,
                required,
                json_types,
            }),
        }
    }
}

fn no_value_no_error() -> Error {
    Error::Internal(Box::new(crate::http::error::Bug(
        "a parser returned neither a value nor an error",
    )))
}

/// A JSON body's typed struct, read from the body's fields.
pub trait FromJson: Sized {
    /// What validation needs besides the body: `()` for most; the user's
    /// names for a new password, the configured roles for a role change.
    type Context<'c>;

    /// Reads every field from `fields`, each problem recorded there;
    /// `None` when a field is missing or malformed.
    fn read(fields: &mut Fields<'_>, cx: Self::Context<'_>) -> Option<Self>;
}

/// The JSON body `object` as a `T`, or a 422 listing every problem.
pub fn parse<T: FromJson>(object: &Map<String, Value>, cx: T::Context<'_>) -> Result<T, Error> {
    let mut fields = Fields::new(object);
    let parsed = T::read(&mut fields, cx);
    fields.finish()?;
    parsed.ok_or_else(no_value_no_error)
}

/// The fields `T`'s parser accepts, and which of them it requires.
pub fn json_fields<T: FromJson>(cx: T::Context<'_>) -> Vec<FieldSpec> {
    let empty = Map::new();
    let mut fields = Fields::new(&empty);
    let _ = T::read(&mut fields, cx);
    fields.asked.0
}

/// Typed access to a JSON object's fields, collecting every problem so one
/// 422 lists them all.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
    asked: Asked,
}

fn string_type(name: &str) -> FieldError {
    FieldError::new(
        &["body", name],
        "Input should be a valid string",
        "string_type",
    )
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: Vec::new(),
            asked: Asked::default(),
        }
    }

    /// A required string field.
    pub fn required_str(&mut self, name: &'static str) -> Option<&'a str> {
        self.asked.record(name, true, &["string"]);
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
                self.errors.push(string_type(name));
                None
            }
        }
    }

    /// An optional string field: absent → `None`; `null` is refused.
    pub fn optional_str(&mut self, name: &'static str) -> Option<&'a str> {
        self.asked.record(name, false, &["string"]);
        match self.map.get(name) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.errors.push(string_type(name));
                None
            }
        }
    }

    /// An optional, nullable string field: absent → `None`,
    /// `null` → `Some(None)`.
    pub fn nullable_str(&mut self, name: &'static str) -> Option<Option<&'a str>> {
        self.asked.record(name, false, &["string", "null"]);
        match self.map.get(name) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => {
                self.errors.push(string_type(name));
                None
            }
        }
    }

    /// An optional list of strings: absent → `None`.
    pub fn optional_str_list(&mut self, name: &'static str) -> Option<Vec<&'a str>> {
        self.asked.record(name, false, &["array"]);
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
    pub fn optional_bool(&mut self, name: &'static str) -> Option<bool> {
        self.asked.record(name, false, &["boolean"]);
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

    /// Whether the body has a field `name`: for a field that is not part
    /// of the struct but is refused with a reason rather than ignored.
    pub fn sent(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Records a rule violation on `name`.
    pub fn invalid(&mut self, name: &str, msg: String) {
        self.errors
            .push(crate::domain::profile::field_error(name, msg));
    }

    /// `Err(422)` if anything was wrong.
    fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}

/// An OAuth 2.0 form's typed struct, read from its parameters.
pub trait FromForm: Sized {
    /// Reads every parameter from `params`; `None` when a required one is
    /// missing.
    fn read(params: &mut Params<'_>) -> Option<Self>;
}

impl OAuthParams {
    /// The parameters as a `T`; a missing required parameter is 400
    /// `invalid_request`, naming the first one missing.
    pub fn parse<T: FromForm>(&self) -> Result<T, Error> {
        let mut params = Params {
            map: &self.0,
            missing: None,
            asked: Asked::default(),
        };
        let parsed = T::read(&mut params);
        if let Some(name) = params.missing {
            return Err(missing_parameter(name));
        }
        parsed.ok_or_else(no_value_no_error)
    }
}

/// The parameters `T`'s parser accepts, and which of them it requires.
pub fn form_fields<T: FromForm>() -> Vec<FieldSpec> {
    let empty = HashMap::new();
    let mut params = Params {
        map: &empty,
        missing: None,
        asked: Asked::default(),
    };
    let _ = T::read(&mut params);
    params.asked.0
}

/// 400 `invalid_request` for a missing (or empty) parameter.
pub fn missing_parameter(name: &str) -> Error {
    Error::Grant(
        crate::http::error::GrantError::InvalidRequest,
        format!("Missing required parameter: {name}"),
    )
}

/// Typed access to an OAuth 2.0 endpoint's parameters.
pub struct Params<'a> {
    map: &'a HashMap<String, String>,
    missing: Option<&'static str>,
    asked: Asked,
}

impl<'a> Params<'a> {
    /// An optional parameter, as sent (an empty value included).
    pub fn optional(&mut self, name: &'static str) -> Option<&'a str> {
        self.asked.record(name, false, &[]);
        self.map.get(name).map(String::as_str)
    }

    /// A required parameter; an empty value counts as missing.
    pub fn required(&mut self, name: &'static str) -> Option<&'a str> {
        self.asked.record(name, true, &[]);
        match self.map.get(name) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                self.missing.get_or_insert(name);
                None
            }
        }
    }
}

/// A list route's typed query. Every parameter is optional.
pub trait FromQuery: Sized {
    /// Reads every parameter from `query`, each problem recorded there.
    fn read(query: &mut QueryFields<'_>) -> Self;
}

/// The query string `raw` as a `T`, or a 422 listing every problem.
pub fn parse_query<T: FromQuery>(raw: Option<&str>) -> Result<T, Error> {
    let pairs = query_pairs(raw)?;
    let mut query = QueryFields {
        pairs: &pairs,
        errors: Vec::new(),
        asked: Asked::default(),
    };
    let parsed = T::read(&mut query);
    if query.errors.is_empty() {
        Ok(parsed)
    } else {
        Err(Error::Validation(query.errors))
    }
}

/// The query parameters `T`'s parser accepts.
pub fn query_fields<T: FromQuery>() -> Vec<FieldSpec> {
    let mut query = QueryFields {
        pairs: &[],
        errors: Vec::new(),
        asked: Asked::default(),
    };
    let _ = T::read(&mut query);
    query.asked.0
}

/// Typed access to a query string's parameters, collecting every problem.
pub struct QueryFields<'a> {
    pairs: &'a [(String, String)],
    errors: Vec<FieldError>,
    asked: Asked,
}

impl<'a> QueryFields<'a> {
    /// Every value sent for `name`, in order: a repeated parameter has each
    /// of its values checked, the last valid one counts.
    pub fn values(&mut self, name: &'static str) -> Vec<&'a str> {
        self.asked.record(name, false, &[]);
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Records a problem with parameter `name`.
    pub fn invalid(&mut self, name: &str, msg: impl Into<String>, kind: &str) {
        self.errors
            .push(FieldError::new(&["query", name], msg, kind));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A body of one required and one optional field.
    struct Pair {
        name: String,
        note: Option<String>,
    }

    impl FromJson for Pair {
        type Context<'c> = ();

        fn read(f: &mut Fields<'_>, (): ()) -> Option<Self> {
            let name = f.required_str("name");
            let note = f.optional_str("note").map(str::to_owned);
            Some(Self {
                name: name?.to_owned(),
                note,
            })
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn locs(e: Error) -> Vec<(Vec<String>, String)> {
        match e {
            Error::Validation(errors) => errors.into_iter().map(|e| (e.loc, e.kind)).collect(),
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn a_body_is_read_into_its_struct_and_unknown_fields_are_ignored() {
        let pair: Pair = parse(&object(json!({"name": "a", "note": "b", "x": 1})), ()).unwrap();
        assert_eq!((pair.name.as_str(), pair.note.as_deref()), ("a", Some("b")));
    }

    #[test]
    fn every_problem_of_a_body_is_listed() {
        let e = parse::<Pair>(&object(json!({"note": 5})), ())
            .err()
            .unwrap();
        assert_eq!(
            locs(e),
            [
                (vec!["body".into(), "name".into()], "missing".into()),
                (vec!["body".into(), "note".into()], "string_type".into()),
            ]
        );
    }

    #[test]
    fn the_fields_a_parser_reads_are_recorded_with_their_requiredness() {
        assert_eq!(
            json_fields::<Pair>(()),
            [
                FieldSpec {
                    name: "name",
                    required: true,
                    json_types: &["string"],
                },
                FieldSpec {
                    name: "note",
                    required: false,
                    json_types: &["string"],
                },
            ]
        );
    }

    struct Revoke {
        token: String,
    }

    impl FromForm for Revoke {
        fn read(p: &mut Params<'_>) -> Option<Self> {
            let token = p.required("token");
            let _ = p.optional("hint");
            Some(Self {
                token: token?.to_owned(),
            })
        }
    }

    #[test]
    fn an_empty_required_parameter_is_missing() {
        let params = |pairs: &[(&str, &str)]| {
            OAuthParams(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            params(&[("token", "t")]).parse::<Revoke>().unwrap().token,
            "t"
        );
        for sent in [&[][..], &[("token", "")]] {
            match params(sent).parse::<Revoke>() {
                Err(Error::Grant(_, m)) => assert_eq!(m, "Missing required parameter: token"),
                _ => panic!("{sent:?}"),
            }
        }
        assert_eq!(form_fields::<Revoke>().len(), 2);
    }

    struct Page {
        limit: Option<u32>,
    }

    impl FromQuery for Page {
        fn read(q: &mut QueryFields<'_>) -> Self {
            let mut limit = None;
            for v in q.values("limit") {
                match v.parse() {
                    Ok(n) => limit = Some(n),
                    Err(_) => q.invalid("limit", "Input should be a valid integer", "int_parsing"),
                }
            }
            Self { limit }
        }
    }

    #[test]
    fn each_value_of_a_repeated_query_parameter_is_checked() {
        assert_eq!(
            parse_query::<Page>(Some("limit=1&limit=2")).unwrap().limit,
            Some(2)
        );
        assert_eq!(parse_query::<Page>(Some("other=x")).unwrap().limit, None);
        let e = parse_query::<Page>(Some("limit=x&limit=2&limit=y"))
            .err()
            .unwrap();
        assert_eq!(locs(e).len(), 2);
        let e = parse_query::<Page>(Some("other=%00")).err().unwrap();
        assert_eq!(locs(e)[0].1, "string_control_character");
    }
}
