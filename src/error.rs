//! The one public error type.
//!
//! Row-level problems (a bad price, a basket that does not add up) are not
//! errors: they are [`Issue`](crate::Issue)s in the [`Report`](crate::Report)
//! and rows in the reject file. An [`Error`] means the pipeline itself could
//! not go on: an I/O failure, a misuse of the API, a configuration mistake.
//! Its `Display` text is fit to show a user: lowercase, the stage first, then
//! the detail (which names the file or table it concerns). It never carries
//! personal data. Positions in the input belong to issues, not errors: a bad
//! row never stops the pipeline.

use std::fmt;

/// Which stage of the pipeline an [`Error`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Writing the staging layout.
    Stage,
    /// Options given to the pipeline.
    Config,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Stage => "stage",
            Stage::Config => "config",
        })
    }
}

/// An error that stopped the pipeline.
#[derive(Debug)]
pub struct Error {
    stage: Stage,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// A new error in `stage` with a user-facing `message`.
    pub fn new(stage: Stage, message: impl Into<String>) -> Error {
        Error {
            stage,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error while the given stage was running.
    pub fn io(stage: Stage, what: impl fmt::Display, err: std::io::Error) -> Error {
        Error {
            stage,
            message: format!("{what}: {err}"),
            source: Some(err),
        }
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The detail, without the stage.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.stage, self.message)
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
    fn display_is_stage_then_detail() {
        for (e, want) in [
            (
                Error::new(Stage::Stage, "batch id does not match the bytes"),
                "stage error: batch id does not match the bytes",
            ),
            (Error::new(Stage::Config, "bad"), "config error: bad"),
            (
                Error::io(Stage::Stage, "rejects", std::io::Error::other("disk full")),
                "stage error: rejects: disk full",
            ),
        ] {
            assert_eq!(e.to_string(), want);
        }
    }
}
