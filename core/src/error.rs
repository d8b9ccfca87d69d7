//! Errors of the cache: a stable code, the JS error class it maps to, and a message.
//!
//! The binding turns a [`CacheError`] into a JS `TypeError`, `RangeError` or `Error` whose `code`
//! property is [`ErrorCode::as_str`]. Tests assert on codes, never on message text.

use std::fmt;

/// Stable error codes. Their string form (`ERR_MLC_*`) is part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A key that is not a non-empty, well-formed string.
    InvalidKey,
    /// A key longer than the documented limit.
    KeyTooLong,
    /// A value JSON cannot carry (`undefined`, function, symbol, BigInt, circular).
    InvalidValue,
    /// A serialized value larger than `limits.maxValueBytes`.
    ValueTooLarge,
    /// A `ttl` that is not a positive finite number of seconds.
    InvalidTtl,
    /// `tags` that are not an array of non-empty strings.
    InvalidTags,
    /// A constructor option of the wrong type or out of range.
    InvalidOption,
    /// A loader that is not a function.
    InvalidLoader,
    /// A call on a cache that was closed.
    Closed,
    /// A loader that did not settle within `loaderTimeout`.
    LoaderTimeout,
}

impl ErrorCode {
    /// The stable string form, e.g. `ERR_MLC_INVALID_KEY`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidKey => "ERR_MLC_INVALID_KEY",
            ErrorCode::KeyTooLong => "ERR_MLC_KEY_TOO_LONG",
            ErrorCode::InvalidValue => "ERR_MLC_INVALID_VALUE",
            ErrorCode::ValueTooLarge => "ERR_MLC_VALUE_TOO_LARGE",
            ErrorCode::InvalidTtl => "ERR_MLC_INVALID_TTL",
            ErrorCode::InvalidTags => "ERR_MLC_INVALID_TAGS",
            ErrorCode::InvalidOption => "ERR_MLC_INVALID_OPTION",
            ErrorCode::InvalidLoader => "ERR_MLC_INVALID_LOADER",
            ErrorCode::Closed => "ERR_MLC_CLOSED",
            ErrorCode::LoaderTimeout => "ERR_MLC_LOADER_TIMEOUT",
        }
    }
}

/// Which JavaScript error class an error becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `TypeError`: the argument has the wrong type or shape.
    Type,
    /// `RangeError`: the argument has the right type but is out of range.
    Range,
    /// `Error`: anything else (for example a closed cache).
    Plain,
}

impl ErrorClass {
    /// The name of the JavaScript class.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Type => "TypeError",
            ErrorClass::Range => "RangeError",
            ErrorClass::Plain => "Error",
        }
    }
}

/// An error of the cache, ready to be shown to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError {
    /// The stable code.
    pub code: ErrorCode,
    /// The JavaScript class it becomes.
    pub class: ErrorClass,
    /// A message naming the argument or option and what is expected.
    pub message: String,
}

impl CacheError {
    /// A `TypeError`-class error.
    pub fn type_error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            class: ErrorClass::Type,
            message: message.into(),
        }
    }

    /// A `RangeError`-class error.
    pub fn range_error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            class: ErrorClass::Range,
            message: message.into(),
        }
    }

    /// A plain `Error`-class error.
    pub fn plain(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            class: ErrorClass::Plain,
            message: message.into(),
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}]: {}",
            self.class.as_str(),
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for CacheError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_strings() {
        assert_eq!(ErrorCode::InvalidKey.as_str(), "ERR_MLC_INVALID_KEY");
        assert_eq!(ErrorCode::Closed.as_str(), "ERR_MLC_CLOSED");
        let e = CacheError::range_error(ErrorCode::InvalidTtl, "ttl must be positive");
        assert_eq!(e.class.as_str(), "RangeError");
        assert!(e.to_string().contains("ERR_MLC_INVALID_TTL"));
    }
}
