//! The lab's stand-in for Microsoft Graph (scripts/mail-lab.d/graph-server.py, written from
//! Microsoft's v1.0 reference) seen from a test: mailboxes and folders made, mails delivered,
//! what is in a folder, what was sent, throttling and access policies switched on, and the log of
//! the requests each mailbox got. Its tokens come from the lab's OAuth provider.

use base64::Engine;
use serde_json::{json, Value};

use super::oauth::{urlencode as enc, TokenProvider};
use super::Lab;

pub struct GraphLab {
    /// `https://localhost:PORT`
    root: String,
    http: reqwest::Client,
}

/// An app registered with the lab's provider for Graph, and the account section that uses it.
pub struct GraphApp {
    pub client_id: String,
    pub secret: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl GraphLab {
    pub fn of(lab: &Lab) -> GraphLab {
        let ca = std::fs::read(lab.ca()).expect("the lab's CA certificate");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
            .build()
            .unwrap();
        GraphLab {
            root: format!("https://localhost:{}", lab.port("MAIL_LAB_GRAPH_PORT")),
            http,
        }
    }

    /// What `graph_url` names.
    pub fn url(&self) -> String {
        format!("{}/v1.0", self.root)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.root));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "the lab's Graph stand-in at {} does not answer ({e}): run `scripts/mail-lab up`",
                self.root
            )
        });
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new (or emptied) mailbox with the well-known folders and `folders` (display-name paths).
    pub async fn mailbox(&self, mailbox: &str, folders: &[&str]) {
        self.admin(
            reqwest::Method::POST,
            "/admin/mailbox",
            Some(json!({"mailbox": mailbox, "folders": folders})),
        )
        .await;
    }

    /// A new mailbox whose inbox is called `inbox_name` (a German mailbox: "Posteingang").
    pub async fn admin_mailbox(&self, mailbox: &str, inbox_name: &str, folders: &[&str]) {
        self.admin(
            reqwest::Method::POST,
            "/admin/mailbox",
            Some(json!({"mailbox": mailbox, "inbox_name": inbox_name, "folders": folders})),
        )
        .await;
    }

    /// Delivers `mails` into `folder`; their immutable ids.
    pub async fn deliver(&self, mailbox: &str, folder: &str, mails: &[Vec<u8>]) -> Vec<String> {
        let mimes: Vec<String> = mails.iter().map(|m| b64(m)).collect();
        let answer = self
            .admin(
                reqwest::Method::POST,
                "/admin/deliver",
                Some(json!({"mailbox": mailbox, "folder": folder, "mimes": mimes})),
            )
            .await;
        answer["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// The mails in `folder` (a display-name path or a well-known name): their ids.
    pub async fn ids(&self, mailbox: &str, folder: &str) -> Vec<String> {
        self.list(mailbox, folder, false)
            .await
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The bytes of the mails in `folder`.
    pub async fn mimes(&self, mailbox: &str, folder: &str) -> Vec<Vec<u8>> {
        self.list(mailbox, folder, true)
            .await
            .iter()
            .map(|m| {
                base64::engine::general_purpose::STANDARD
                    .decode(m["mime"].as_str().unwrap())
                    .unwrap()
            })
            .collect()
    }

    async fn list(&self, mailbox: &str, folder: &str, mime: bool) -> Vec<Value> {
        let query = format!(
            "/admin/messages?mailbox={}&folder={}&mime={}",
            enc(mailbox),
            enc(folder),
            if mime { 1 } else { 0 }
        );
        let answer = self.admin(reqwest::Method::GET, &query, None).await;
        answer["messages"].as_array().cloned().unwrap_or_default()
    }

    /// What `mailbox` sent (sendMail and drafts sent), oldest first: the MIME bytes each.
    pub async fn sent(&self, mailbox: &str) -> Vec<Vec<u8>> {
        let answer = self
            .admin(
                reqwest::Method::GET,
                &format!("/admin/sent?mailbox={}", enc(mailbox)),
                None,
            )
            .await;
        answer["sent"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s["mime"].as_str().unwrap())
                    .unwrap()
            })
            .collect()
    }

    /// The next `requests` requests for `mailbox` are answered 429 with `Retry-After`.
    pub async fn throttle(&self, mailbox: &str, requests: u32, retry_after: u32) {
        self.admin(
            reqwest::Method::POST,
            "/admin/throttle",
            Some(json!({"mailbox": mailbox, "requests": requests, "retry_after": retry_after, "status": 429})),
        )
        .await;
    }

    /// Restricts the app to `mailboxes` (an ApplicationAccessPolicy).
    pub async fn restrict(&self, client_id: &str, mailboxes: &[&str]) {
        self.admin(
            reqwest::Method::POST,
            "/admin/policy",
            Some(json!({"client_id": client_id, "mailboxes": mailboxes})),
        )
        .await;
    }

    /// The requests `mailbox` got and the throttled answers it was given.
    pub async fn log(&self, mailbox: &str) -> Value {
        self.admin(
            reqwest::Method::GET,
            &format!("/admin/log?mailbox={}", enc(mailbox)),
            None,
        )
        .await
    }
}

impl GraphApp {
    /// Registers an app with `roles` (e.g. Mail.ReadWrite, Mail.Send) whose tokens live
    /// `ttl_secs` seconds.
    pub async fn register(lab: &Lab, client_id: &str, roles: &[&str], ttl_secs: u64) -> GraphApp {
        let provider = TokenProvider::of(lab);
        let secret = format!("{client_id}-Secret-9");
        let (status, body) = provider
            .post_json(
                "/admin/client",
                &json!({"client_id": client_id, "client_secret": secret,
                        "roles": roles, "ttl": ttl_secs}),
            )
            .await;
        assert_eq!(status, 200, "registering an app: {body}");
        GraphApp {
            client_id: client_id.to_string(),
            secret,
        }
    }

    /// The `[account.oauth2]` (or `[smtp.oauth2]`) table's keys for this app in the lab.
    pub fn oauth2_table(&self, lab: &Lab, graph: &GraphLab) -> String {
        format!(
            "provider = \"custom\"\ntoken_url = \"{}/token\"\ngrant = \"client_credentials\"\n\
             client_id = \"{}\"\nclient_secret = \"{}\"\ngraph_url = \"{}\"\n",
            TokenProvider::of(lab).url(),
            self.client_id,
            self.secret,
            graph.url()
        )
    }

    /// `[smtp]` sending through Graph's sendMail as this app; `extra` are more `[smtp]` keys.
    pub fn smtp_section(&self, lab: &Lab, graph: &GraphLab, extra: &str) -> String {
        format!(
            "[smtp]\nprotocol = \"graph\"\nauth = \"oauth2\"\nca_file = \"{}\"\n{extra}\n[smtp.oauth2]\n{}",
            lab.ca(),
            self.oauth2_table(lab, graph)
        )
    }

    /// An `[[account]]` body for `mailbox` with `protocol = "graph"`; `disposal` is e.g.
    /// `action = "move"\nmove_to = "Erledigt"`.
    pub fn account(
        &self,
        lab: &Lab,
        graph: &GraphLab,
        name: &str,
        mailbox: &str,
        disposal: &str,
        extra: &str,
    ) -> String {
        format!(
            "name = \"{name}\"\nemail = \"{mailbox}\"\nprotocol = \"graph\"\nuser = \"{mailbox}\"\n\
             folder = \"Inbox\"\nca_file = \"{}\"\nticket_type = \"question\"\nticket_status = \"open\"\n\
             {disposal}\nauth = \"oauth2\"\n{extra}\n[account.oauth2]\n{}",
            lab.ca(),
            self.oauth2_table(lab, graph)
        )
    }
}
