// The accounts page's little script: the port that follows protocol and encryption, the two
// test buttons (steps shown as they finish), the folder picker and the server settings found
// from the address. Server text is only ever put in with textContent, never as HTML.
"use strict";

(function () {
  const form = document.getElementById("account");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrf]").value;
  const field = (name) => form.querySelector(`[name="${name}"]:not([type=hidden])`);

  // --- Port -----------------------------------------------------------------------------
  const port = field("port");
  const protocol = field("protocol");
  const encryption = field("encryption");
  const hint = document.getElementById("port-hint");
  let portTyped = port.value !== "";
  const defaultPort = () => {
    const ssl = encryption.value === "ssl";
    if (protocol.value === "pop3") return ssl ? "995" : "110";
    return ssl ? "993" : "143";
  };
  const followPort = () => {
    port.placeholder = defaultPort();
    if (!portTyped) port.value = defaultPort();
    hint.hidden = port.value.trim() !== "25";
  };
  port.addEventListener("input", () => {
    portTyped = port.value !== "";
    hint.hidden = port.value.trim() !== "25";
  });
  protocol.addEventListener("change", followPort);
  encryption.addEventListener("change", followPort);
  followPort();

  // --- Problems beside fields --------------------------------------------------------------
  const clearIssues = () => form.querySelectorAll("p.issue.live").forEach((p) => p.remove());
  const showIssue = (name, text) => {
    const input = field(name);
    const box = input ? input.closest(".field") : form;
    const p = document.createElement("p");
    p.className = "issue live";
    p.dataset.for = name;
    p.setAttribute("role", "alert");
    p.textContent = text;
    box.appendChild(p);
  };
  const showFieldIssues = (fields) => {
    for (const [name, list] of Object.entries(fields || {})) {
      for (const text of list) showIssue(name || "", text);
    }
  };

  const post = (url) =>
    fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });

  // --- Test buttons: one line of JSON per finished step ------------------------------------
  const steps = document.getElementById("steps");
  const addStep = (s) => {
    const li = document.createElement("li");
    li.className = s.ok ? "ok" : "failed";
    li.dataset.step = s.step;
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = s.ok ? "✓" : "✗";
    const name = document.createElement("strong");
    name.textContent = s.step;
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = s.detail;
    li.append(mark, " ", name, " ", detail);
    if (s.hint) {
      const h = document.createElement("span");
      h.className = "hint";
      h.textContent = s.hint;
      li.append(" – ", h);
    }
    steps.appendChild(li);
    if (!s.ok && s.field) showIssue(s.field, s.detail + (s.hint ? " – " + s.hint : ""));
  };
  const runCheck = async (button) => {
    clearIssues();
    steps.replaceChildren();
    steps.dataset.state = "running";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const response = await post(button.dataset.url);
      if (response.status === 422) {
        showFieldIssues((await response.json()).fields);
        steps.dataset.state = "failed";
        return;
      }
      if (!response.ok || !response.body) {
        steps.dataset.state = "failed";
        addStep({ ok: false, step: button.textContent, detail: await response.text() });
        return;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
          if (line.kind === "step") addStep(line);
          if (line.kind === "done") steps.dataset.state = line.ok ? "passed" : "failed";
        }
      }
    } catch (e) {
      steps.dataset.state = "failed";
      addStep({ ok: false, step: button.textContent, detail: String(e) });
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  document.getElementById("test-fetch").addEventListener("click", (e) => runCheck(e.target));
  document.getElementById("test-send").addEventListener("click", (e) => runCheck(e.target));

  // --- Folder picker ----------------------------------------------------------------------------
  const pick = document.getElementById("folder-list");
  const folderProblem = document.getElementById("folders-problem");
  document.getElementById("load-folders").addEventListener("click", async () => {
    clearIssues();
    folderProblem.hidden = true;
    const response = await post("/api/folders");
    const answer = await response.json();
    if (response.status === 422) return showFieldIssues(answer.fields);
    if (answer.error) {
      folderProblem.textContent = answer.error;
      folderProblem.hidden = false;
      if (answer.field) showIssue(answer.field, answer.error);
      return;
    }
    pick.replaceChildren();
    const none = document.createElement("option");
    none.value = "";
    none.textContent = "–";
    pick.appendChild(none);
    for (const name of answer.folders) {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = name;
      if (name === field("move_to").value) o.selected = true;
      pick.appendChild(o);
    }
    pick.hidden = false;
    pick.dataset.loaded = "true";
  });
  pick.addEventListener("change", () => {
    if (pick.value) field("move_to").value = pick.value;
  });

  // --- Server settings from the address -------------------------------------------------------
  const detected = document.getElementById("detected");
  let detecting = false;
  const detect = async () => {
    // One run at a time: leaving the address field and clicking the button both ask.
    if (detecting) return;
    detecting = true;
    try {
      await detectNow();
    } finally {
      detecting = false;
    }
  };
  const detectNow = async () => {
    detected.replaceChildren();
    detected.dataset.state = "running";
    const response = await post("/api/detect");
    const answer = await response.json();
    if (!response.ok) {
      detected.dataset.state = "failed";
      detected.textContent = answer.error || response.statusText;
      return;
    }
    const list = document.createElement("ul");
    for (const c of answer.incoming || []) {
      const li = document.createElement("li");
      li.className = c.proven ? "ok" : "unproven";
      li.dataset.host = c.host;
      li.dataset.port = String(c.port);
      li.textContent = c.line;
      const use = document.createElement("button");
      use.type = "button";
      use.className = "use";
      use.textContent = "✔";
      use.addEventListener("click", () => {
        protocol.value = c.protocol;
        encryption.value = c.encryption;
        field("host").value = c.host;
        port.value = String(c.port);
        portTyped = true;
        followPort();
        if (answer.oauth2) {
          field("auth").value = "oauth2";
          field("oauth2.provider").value = answer.oauth2.provider;
        }
      });
      li.append(" ", use);
      list.appendChild(li);
    }
    detected.appendChild(list);
    if (answer.oauth2) {
      const note = document.createElement("p");
      note.className = "hint";
      note.textContent = answer.oauth2.reason;
      detected.appendChild(note);
    }
    detected.dataset.state = "done";
  };
  document.getElementById("detect").addEventListener("click", detect);
  // Typing an address proposes the servers at once when none is filled in yet.
  field("email").addEventListener("change", () => {
    if (field("host").value.trim() === "" && field("email").value.includes("@")) detect();
  });
})();
