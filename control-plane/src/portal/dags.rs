//! An environment's DAG files in the platform bucket: the list, uploads (a plain multipart form;
//! the page's script adds drag-and-drop and progress), deletion, and Airflow's import errors
//! with file and line.

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::TryStreamExt;
use serde_json::json;

use super::error::PortalError;
use super::form::Form;
use super::session::Session;
use super::templates::{page_context, render};
use crate::api::error::ApiError;
use crate::api::web_login::see_other;
use crate::api::AppState;
use crate::service::dags::{UploadError, MAX_DAG_FILE};
use crate::service::ServiceError;

/// The most one upload form may carry (several files of up to [`MAX_DAG_FILE`] each).
pub const MAX_UPLOAD_FORM: usize = 8 * MAX_DAG_FILE;

/// The route layer that lets upload forms past the API's small body limit.
pub fn upload_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD_FORM)
}

/// The line an import error points at in its own file: the last `File "…/<file>", line N` of
/// the traceback, else the last `line N` at all.
pub fn error_line(file: &str, message: &str) -> Option<u32> {
    let number = |rest: &str| -> Option<u32> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let name = file.rsplit('/').next().unwrap_or(file);
    let own = message
        .match_indices(", line ")
        .filter(|(i, _)| {
            let before = &message[..*i];
            before
                .rsplit_once("File \"")
                .is_some_and(|(_, path)| path.trim_end_matches('"').ends_with(name))
        })
        .filter_map(|(i, m)| number(&message[i + m.len()..]))
        .last();
    own.or_else(|| {
        message
            .match_indices("line ")
            .filter_map(|(i, m)| number(&message[i + m.len()..]))
            .last()
    })
}

async fn dags_page(
    s: &AppState,
    session: &Session,
    tenant: &str,
    env: &str,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let files = s.services.list_dags(&session.actor, tenant, env).await?;
    // Import errors come from the environment's Airflow: while it does not run, the page
    // says why instead.
    let (import_errors, import_error_note) =
        match s.services.import_errors(&session.actor, tenant, env).await {
            Ok(list) => (list, None),
            Err(e) => (vec![], Some(ApiError::Service(e).to_problem().detail)),
        };
    let mut ctx = page_context(session, Some(tenant), &format!("{tenant}/{env}: DAGs"));
    ctx.insert("env_name", env);
    ctx.insert("files", &files);
    ctx.insert(
        "import_errors",
        &import_errors
            .iter()
            .map(|e| {
                json!({
                    "file": e.file,
                    "line": error_line(&e.file, &e.message),
                    "message": e.message,
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("import_error_note", &import_error_note);
    ctx.insert("notice", &notice);
    ctx.insert("error", &error);
    ctx.insert("max_file_mib", &(MAX_DAG_FILE / (1024 * 1024)));
    let mut resp = super::html(render("dags.html", &ctx)?);
    *resp.status_mut() = status;
    Ok(resp)
}

/// `GET …/dags`.
pub async fn page(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    dags_page(&s, &session, &tenant, &env, None, None, StatusCode::OK).await
}

/// `POST …/dags` (multipart: `csrf_token` first, then one or more `files`): uploads each file
/// under its own name. A refused file stops the form there; the files before it are kept.
pub async fn upload(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PortalError> {
    let mut multipart = multipart.map_err(|e| {
        PortalError::Api(ApiError::malformed(
            format!("failed to read the upload form: {}", e.body_text()),
            Some("Content-Type"),
        ))
    })?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        PortalError::Api(ApiError::malformed(
            format!("failed to read the upload form: {e}"),
            None,
        ))
    };
    // The CSRF token comes first (browsers send fields in the form's order), so nothing is
    // stored before the form is known to come from the portal.
    let first = multipart.next_field().await.map_err(malformed)?;
    let csrf = match first {
        Some(f) if f.name() == Some("csrf_token") => f.text().await.map_err(malformed)?,
        _ => String::new(),
    };
    if !session.csrf_matches(&csrf) {
        return Err(PortalError::Csrf);
    }
    let mut stored = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() != Some("files") {
            continue;
        }
        let Some(name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let stream = field.map_err(|e| e.to_string());
        let stream = Box::pin(stream);
        match s
            .services
            .put_dag(&session.actor, &tenant, &env, &name, stream)
            .await
        {
            Ok(f) => stored.push(f.path),
            Err(e) => {
                let message = match e {
                    UploadError::Service(e @ ServiceError::Invalid(_)) => {
                        format!("{name}: {}", ApiError::Service(e).to_problem().detail)
                    }
                    UploadError::Service(e) => return Err(e.into()),
                    UploadError::TooLarge { limit } => {
                        format!("{name}: larger than {} MiB", limit / (1024 * 1024))
                    }
                    UploadError::Body(m) => format!("{name}: the upload broke off: {m}"),
                };
                let notice =
                    (!stored.is_empty()).then(|| format!("uploaded {}", stored.join(", ")));
                return dags_page(
                    &s,
                    &session,
                    &tenant,
                    &env,
                    notice,
                    Some(message),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        }
    }
    if stored.is_empty() {
        return dags_page(
            &s,
            &session,
            &tenant,
            &env,
            None,
            Some("choose one or more files to upload".to_owned()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    Ok(see_other(
        &format!("/tenants/{tenant}/environments/{env}/dags"),
        None,
    ))
}

/// `POST …/dags/delete` (`path`): deletes one DAG file.
pub async fn delete(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let path = form.get("path").unwrap_or_default();
    s.services
        .delete_dag(&session.actor, &tenant, &env, path)
        .await?;
    Ok(see_other(
        &format!("/tenants/{tenant}/environments/{env}/dags"),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_an_import_error_is_the_one_in_its_own_file() {
        let tb = "Traceback (most recent call last):\n  File \"/usr/lib/python3/importlib/__init__.py\", line 126, in import_module\n  File \"/home/env/dags/etl/broken.py\", line 7, in <module>\n    import nothing\nModuleNotFoundError: No module named 'nothing'";
        assert_eq!(error_line("etl/broken.py", tb), Some(7));
        let syntax = "  File \"/home/env/dags/bad.py\", line 3\n    def (:\n        ^\nSyntaxError: invalid syntax";
        assert_eq!(error_line("bad.py", syntax), Some(3));
        assert_eq!(error_line("x.py", "no line here"), None);
    }
}
