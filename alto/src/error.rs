//! The RFC's error codes (section 8.5.2), answered with HTTP 400.

use crate::model::{ErrorMeta, ErrorResponse};

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AltoError {
    /// The body is not JSON (or not a JSON object): where it stopped.
    Syntax(String),
    /// A required field is absent: its path (`cost-type/cost-mode`).
    MissingField(String),
    /// A field's value has the wrong JSON type: its path.
    InvalidFieldType(String),
    /// A field's value is wrong: its path, and the value as a string.
    InvalidFieldValue {
        /// The path (`endpoints/srcs` for an element of that array).
        field: String,
        /// The value.
        value: String,
    },
}

impl AltoError {
    /// The RFC's code.
    pub fn code(&self) -> &'static str {
        match self {
            AltoError::Syntax(_) => "E_SYNTAX",
            AltoError::MissingField(_) => "E_MISSING_FIELD",
            AltoError::InvalidFieldType(_) => "E_INVALID_FIELD_TYPE",
            AltoError::InvalidFieldValue { .. } => "E_INVALID_FIELD_VALUE",
        }
    }

    /// A wrong value at `field`.
    pub fn value(field: &str, value: impl Into<String>) -> AltoError {
        AltoError::InvalidFieldValue {
            field: field.to_string(),
            value: value.into(),
        }
    }

    /// The `application/alto-error+json` body.
    pub fn response(&self) -> ErrorResponse {
        let mut meta = ErrorMeta {
            code: self.code().to_string(),
            syntax_error: None,
            field: None,
            value: None,
        };
        match self {
            AltoError::Syntax(s) => meta.syntax_error = Some(s.clone()),
            AltoError::MissingField(f) | AltoError::InvalidFieldType(f) => {
                meta.field = Some(f.clone())
            }
            AltoError::InvalidFieldValue { field, value } => {
                meta.field = Some(field.clone());
                meta.value = Some(value.clone());
            }
        }
        ErrorResponse { meta }
    }

    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.response()).unwrap_or_default()
    }
}

impl std::fmt::Display for AltoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AltoError::Syntax(s) => write!(f, "E_SYNTAX: {s}"),
            AltoError::MissingField(p) => write!(f, "E_MISSING_FIELD: {p}"),
            AltoError::InvalidFieldType(p) => write!(f, "E_INVALID_FIELD_TYPE: {p}"),
            AltoError::InvalidFieldValue { field, value } => {
                write!(f, "E_INVALID_FIELD_VALUE: {field} = {value:?}")
            }
        }
    }
}
