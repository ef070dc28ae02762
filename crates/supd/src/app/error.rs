//! What an app's handle answers when it cannot do what it was asked: a
//! typed error, because its callers branch on it. An operation preempted by
//! a stop, or whose app is being deleted, did not fail: a trigger's
//! reactor says so quietly, and a second `delete` of an app already being
//! deleted succeeds. Everything else is a failure whose message names the
//! app, for the user.

/// Why an app could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The app's actor has ended: the app is being deleted.
    #[error("app \"{app}\" is being deleted")]
    Gone {
        /// The app.
        app: String,
    },
    /// A stop, delete or kill began while the operation ran, so it
    /// launched nothing more.
    #[error("app \"{app}\": stopped while starting")]
    Preempted {
        /// The app.
        app: String,
    },
    /// The app refused or failed; the message names it.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// Whether a stop or a delete, not a failure, ended the operation.
    pub fn is_preemption(&self) -> bool {
        matches!(self, AppError::Gone { .. } | AppError::Preempted { .. })
    }

    /// A failure said with more context (`what` of its message); a
    /// preemption stays what it is.
    pub fn explained(self, what: impl FnOnce(String) -> String) -> AppError {
        match self {
            AppError::Failed(message) => AppError::Failed(what(message)),
            preempted => preempted,
        }
    }
}

impl From<String> for AppError {
    fn from(message: String) -> AppError {
        AppError::Failed(message)
    }
}

impl From<AppError> for String {
    fn from(error: AppError) -> String {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preemption_stays_one_and_a_failure_is_explained() {
        let gone = AppError::Gone { app: "web".into() };
        let preempted = AppError::Preempted { app: "web".into() };
        let failed = AppError::Failed("app \"web\" instance 0: exit code 1".into());
        for (error, preemption) in [(&gone, true), (&preempted, true), (&failed, false)] {
            assert_eq!(error.is_preemption(), preemption, "{error}");
            let explained = error.clone().explained(|m| format!("reload: {m}"));
            assert_eq!(explained.is_preemption(), preemption);
            assert_eq!(explained == *error, preemption, "{explained}");
        }
        assert_eq!(gone.to_string(), "app \"web\" is being deleted");
        assert_eq!(
            String::from(failed.explained(|m| format!("reload: {m}"))),
            "reload: app \"web\" instance 0: exit code 1"
        );
    }
}
