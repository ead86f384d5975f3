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

/// What went wrong, as a stable name a program matches (the edge worker,
/// the page, a script), where the text is for people and may be reworded.
/// The wasm binding throws an `Error` whose `code` is [`ErrorCode::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The options given are not valid (a bad value, an unknown field).
    Config,
    /// The batch id given is not 32 lowercase hex digits.
    BadBatchId,
    /// The bytes pushed do not have the batch id given at the start (the
    /// file changed while it was read, or the id was for another file).
    BatchIdMismatch,
    /// Writing a table file failed.
    Io,
    /// A pipeline or hasher was used after it finished.
    Finished,
}

impl ErrorCode {
    /// Every code, for tests and for the TypeScript declarations.
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::Config,
        ErrorCode::BadBatchId,
        ErrorCode::BatchIdMismatch,
        ErrorCode::Io,
        ErrorCode::Finished,
    ];

    /// The code's stable name (`batch_id_mismatch`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Config => "config",
            ErrorCode::BadBatchId => "bad_batch_id",
            ErrorCode::BatchIdMismatch => "batch_id_mismatch",
            ErrorCode::Io => "io",
            ErrorCode::Finished => "finished",
        }
    }

    /// The stage an error of this code belongs to (the first word of its text).
    pub fn stage(self) -> Stage {
        match self {
            ErrorCode::Config | ErrorCode::BadBatchId | ErrorCode::Finished => Stage::Config,
            ErrorCode::BatchIdMismatch | ErrorCode::Io => Stage::Stage,
        }
    }
}

/// An error that stopped the pipeline.
#[derive(Debug)]
pub struct Error {
    stage: Stage,
    code: ErrorCode,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// A new error in `stage` with a user-facing `message`; its code is the
    /// stage's general one (`config` or `io`): prefer [`Error::coded`].
    pub fn new(stage: Stage, message: impl Into<String>) -> Error {
        let code = match stage {
            Stage::Config => ErrorCode::Config,
            Stage::Stage => ErrorCode::Io,
        };
        Error::coded(code, message).in_stage(stage)
    }

    /// A new error with a stable `code` (its stage follows from it) and a
    /// user-facing `message`.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            stage: code.stage(),
            code,
            message: message.into(),
            source: None,
        }
    }

    fn in_stage(mut self, stage: Stage) -> Error {
        self.stage = stage;
        self
    }

    /// An I/O error while the given stage was running (code `io`).
    pub fn io(stage: Stage, what: impl fmt::Display, err: std::io::Error) -> Error {
        Error {
            stage,
            code: ErrorCode::Io,
            message: format!("{what}: {err}"),
            source: Some(err),
        }
    }

    /// The stable code a program matches instead of the text.
    pub fn code(&self) -> ErrorCode {
        self.code
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

    #[test]
    fn codes_are_stable_names_and_give_the_stage() {
        for (code, name, stage) in [
            (ErrorCode::Config, "config", "config"),
            (ErrorCode::BadBatchId, "bad_batch_id", "config"),
            (ErrorCode::BatchIdMismatch, "batch_id_mismatch", "stage"),
            (ErrorCode::Io, "io", "stage"),
            (ErrorCode::Finished, "finished", "config"),
        ] {
            assert_eq!(code.as_str(), name);
            // serde gives the same name (the TypeScript `ErrorCode` union).
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{name}\""));
            let e = Error::coded(code, "x");
            assert_eq!(e.code(), code);
            assert_eq!(e.to_string(), format!("{stage} error: x"));
        }
        assert_eq!(ErrorCode::ALL.len(), 5);
        assert_eq!(Error::new(Stage::Config, "x").code(), ErrorCode::Config);
        assert_eq!(
            Error::io(Stage::Stage, "t", std::io::Error::other("y")).code(),
            ErrorCode::Io
        );
    }
}
