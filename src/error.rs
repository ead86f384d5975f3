//! The one public error type.
//!
//! Row-level problems (a bad price, a basket that does not add up) are not
//! errors: they are [`Issue`](crate::Issue)s in the [`Report`](crate::Report)
//! and rows in the reject file. An [`Error`] means the pipeline itself could
//! not go on: an I/O failure, a misuse of the API, a configuration mistake.
//! Its `Display` text is fit to show a user: lowercase, the stage first, then
//! the position, then the detail. It never carries personal data.

use std::fmt;

/// Which stage of the pipeline an [`Error`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the input bytes.
    Read,
    /// Dropping personal data, deriving the customer key.
    Clean,
    /// Checking rows.
    Validate,
    /// Building the star schema.
    Transform,
    /// Writing the staging layout.
    Stage,
    /// Options given to the pipeline.
    Config,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Read => "read",
            Stage::Clean => "clean",
            Stage::Validate => "validate",
            Stage::Transform => "transform",
            Stage::Stage => "stage",
            Stage::Config => "config",
        })
    }
}

/// Where in the input something happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// 1-based physical line of the file.
    pub line: u64,
    /// 0-based byte offset in the file.
    pub byte: u64,
    /// 1-based data row (header and blank lines do not count).
    pub record: u64,
}

/// An error that stopped the pipeline.
#[derive(Debug)]
pub struct Error {
    stage: Stage,
    position: Option<Position>,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// A new error in `stage` with a user-facing `message`.
    pub fn new(stage: Stage, message: impl Into<String>) -> Error {
        Error {
            stage,
            position: None,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, pinned to a position in the input.
    pub fn at(mut self, position: Position) -> Error {
        self.position = Some(position);
        self
    }

    /// An I/O error while the given stage was running.
    pub fn io(stage: Stage, what: impl fmt::Display, err: std::io::Error) -> Error {
        Error {
            stage,
            position: None,
            message: format!("{what}: {err}"),
            source: Some(err),
        }
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Where in the input, when known.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// The detail, without stage or position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error", self.stage)?;
        if let Some(p) = self.position {
            write!(f, ": line {}, byte {}, record {}", p.line, p.byte, p.record)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_stage_position_detail() {
        let e = Error::new(Stage::Stage, "batch id does not match the bytes").at(Position {
            line: 3,
            byte: 40,
            record: 2,
        });
        assert_eq!(
            e.to_string(),
            "stage error: line 3, byte 40, record 2: batch id does not match the bytes"
        );
        assert_eq!(
            Error::new(Stage::Config, "bad").to_string(),
            "config error: bad"
        );
    }
}
