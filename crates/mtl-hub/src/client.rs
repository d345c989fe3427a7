//! The HTTP side of a download: the hub's own answers are read without following redirects
//! (a large file's redirect carries its commit and etag), then the redirect is followed to
//! the storage that serves the bytes, with the token only when it is the hub's own address.

use crate::error::Error;

/// At most this many redirects inside the hub (a renamed repository) are followed.
pub(crate) const MAX_HUB_REDIRECTS: usize = 5;

/// An HTTP client for one hub, for one model (named in its errors).
pub(crate) struct HubClient {
    /// The hub's address, without a trailing `/`.
    pub endpoint: String,
    token: Option<String>,
    /// Follows no redirect.
    hub: ureq::Agent,
    /// Follows redirects, from the hub to the storage of large files (ureq drops the token
    /// on a redirect).
    storage: ureq::Agent,
    /// `owner/name`, for messages.
    id: String,
    /// The revision, for messages.
    revision: String,
}

/// Why one file could not be had.
pub(crate) enum FileError {
    /// The repository has no such file (404).
    NotFound,
    /// Anything else: the hub is unreachable, refused, or answered nonsense.
    Failed(Error),
}

impl From<Error> for FileError {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

impl HubClient {
    /// A client of the hub at `endpoint` for `id` at `revision`.
    pub fn new(endpoint: &str, token: Option<String>, id: &str, revision: &str) -> Self {
        let user_agent = format!("mtl/{}", env!("CARGO_PKG_VERSION"));
        let agent = |redirects| {
            ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .user_agent(&user_agent)
                .redirects(redirects)
                .build()
        };
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            hub: agent(0),
            storage: agent(5),
            id: id.to_owned(),
            revision: revision.to_owned(),
        }
    }

    /// GET `url` (from the storage of large files when `storage`, else from the hub without
    /// following redirects), from byte `from` on when given, with the token when `url` is on
    /// the hub. Uncompressed, as Python's `huggingface_hub` asks: the etag is then the hash of
    /// the bytes as they come.
    pub fn get(
        &self,
        url: &str,
        storage: bool,
        from: Option<u64>,
    ) -> Result<ureq::Response, Box<ureq::Error>> {
        let agent = if storage { &self.storage } else { &self.hub };
        let mut request = agent.get(url).set("Accept-Encoding", "identity");
        if let Some(from) = from {
            request = request.set("Range", &format!("bytes={from}-"));
        }
        if let Some(token) = &self.token
            && url.starts_with(&format!("{}/", self.endpoint))
        {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        request.call().map_err(Box::new)
    }

    /// A response's header, or an error that says the server is no hub.
    pub fn required_header<'a>(
        &self,
        response: &'a ureq::Response,
        name: &str,
        url: &str,
    ) -> Result<&'a str, Error> {
        response.header(name).ok_or_else(|| Error::NotAHub {
            endpoint: self.endpoint.clone(),
            url: url.to_owned(),
            header: name.to_owned(),
        })
    }

    /// Turns a failed request into "not found" or an error that says what to do.
    pub fn classify(&self, error: ureq::Error, url: &str) -> FileError {
        let endpoint = self.endpoint.clone();
        let url = url.to_owned();
        FileError::Failed(match error {
            ureq::Error::Status(404, _) => return FileError::NotFound,
            ureq::Error::Status(code @ (401 | 403), _) => Error::Refused {
                endpoint,
                url,
                code,
                id: self.id.clone(),
                revision: self.revision.clone(),
            },
            ureq::Error::Status(code, response) => Error::Status {
                endpoint,
                url,
                code,
                text: response.status_text().to_owned(),
            },
            ureq::Error::Transport(t) => Error::Unreachable {
                endpoint,
                id: self.id.clone(),
                revision: self.revision.clone(),
                message: t.to_string(),
            },
        })
    }

    /// [`HubClient::classify`] for a request for the bytes, where a 404 is an error.
    pub fn storage_error(&self, error: ureq::Error, url: &str) -> Error {
        match self.classify(error, url) {
            FileError::NotFound => Error::StorageNotFound {
                url: url.to_owned(),
            },
            FileError::Failed(e) => e,
        }
    }
}
