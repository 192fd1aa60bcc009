//! A plain-HTTP "browser" for the portal: it keeps the session cookie, reads the CSRF token off
//! the pages it loads, and follows no redirects (tests look at them).

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};

/// What the portal answered: status, `Location` when it redirects, `Set-Cookie` headers, body.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// A hidden field's value in the page (`name="csrf_token" value="…"`).
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }

    /// The text of the element with `id` (tags inside removed), if there is one.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let at = self.body.find(&marker)?;
        let open_end = at + self.body[at..].find('>')? + 1;
        let close = open_end + self.body[open_end..].find("</")?;
        Some(unescape(self.body[open_end..close].trim()))
    }

    pub fn has_id(&self, id: &str) -> bool {
        self.body.contains(&format!("id=\"{id}\""))
    }
}

/// Text as the browser shows it (the entities tera escapes with undone).
pub fn unescape(html: &str) -> String {
    html.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A signed-out or signed-in portal visitor.
pub struct Visitor {
    http: Client,
    pub base: String,
    /// `name=value` of every cookie the portal set and did not clear.
    pub cookies: Vec<(String, String)>,
    /// The CSRF token of the last page that had one.
    pub csrf: Option<String>,
}

impl Visitor {
    pub fn new(base: &str) -> Self {
        Self {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            cookies: Vec::new(),
            csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, r: reqwest::Response) -> Page {
        let status = r.status();
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies: Vec<String> = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !v.is_empty() && !c.contains("Max-Age=0") {
                    self.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        let page = Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        };
        if let Some(t) = page.hidden("csrf_token") {
            self.csrf = Some(t);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await;
        match r {
            Ok(r) => self.read(r).await,
            Err(e) => Page {
                status: StatusCode::BAD_GATEWAY,
                location: None,
                set_cookies: vec![],
                headers: Default::default(),
                body: format!("request failed: {e}"),
            },
        }
    }

    /// Posts a form as a browser would, with exactly these fields.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) => self.read(r).await,
            Err(e) => Page {
                status: StatusCode::BAD_GATEWAY,
                location: None,
                set_cookies: vec![],
                headers: Default::default(),
                body: format!("request failed: {e}"),
            },
        }
    }

    /// Posts a form with the CSRF token of the last page read.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts a multipart form: the CSRF token first, then `files` (name, content).
    pub async fn upload(&mut self, path: &str, files: &[(&str, &str)]) -> Page {
        let mut form = reqwest::multipart::Form::new()
            .text("csrf_token", self.csrf.clone().unwrap_or_default());
        for (name, content) in files {
            form = form.part(
                "files",
                reqwest::multipart::Part::text((*content).to_owned()).file_name((*name).to_owned()),
            );
        }
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .multipart(form)
            .send()
            .await;
        match r {
            Ok(r) => self.read(r).await,
            Err(e) => Page {
                status: StatusCode::BAD_GATEWAY,
                location: None,
                set_cookies: vec![],
                headers: Default::default(),
                body: format!("request failed: {e}"),
            },
        }
    }

    /// Signs in with a token through the login form; the answer is the form's (a 303 to the
    /// landing page on success).
    pub async fn sign_in(&mut self, token: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("token", token), ("next", "/")])
            .await
    }

    /// A visitor signed in with `token`, on its landing page (CSRF token read).
    pub async fn signed_in(base: &str, token: &str) -> Self {
        let mut v = Self::new(base);
        let r = v.sign_in(token).await;
        if let Some(to) = r.location {
            v.get(&to).await;
        }
        v
    }
}
