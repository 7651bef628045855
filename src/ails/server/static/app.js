// The chat page of `ails serve`: plain ES2020, no framework, no build step.
//
// It talks only to the gateway that served it (same origin, relative URLs so a
// reverse proxy may mount the gateway under a prefix):
//   GET  v1/models                 -> the model picker
//   POST v1/chat/completions       -> stream: true, read as server-sent events
// Everything the page remembers (conversation, system prompt, model, API key)
// lives in this browser's localStorage and nowhere else.
//
// The page is written for a strict Content-Security-Policy (default-src 'self'):
// no inline scripts, no inline event handlers, no inline style attributes in
// markup (styles set through the CSSOM, as the composer's height is, are allowed).
"use strict";

(() => {
  const STATE_KEY = "ails.chat.v1";
  const API_KEY_KEY = "ails.apiKey";
  // How far from the bottom (px) still counts as "following" the answer.
  const FOLLOW_SLACK = 80;

  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"),
    settings: $("settings"),
    settingsToggle: $("settings-toggle"),
    system: $("system"),
    newChat: $("new-chat"),
    keyPanel: $("key-panel"),
    keyForm: $("key-form"),
    keyReason: $("key-reason"),
    apiKey: $("api-key"),
    keyForget: $("key-forget"),
    messages: $("messages"),
    empty: $("empty"),
    notice: $("notice"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
  };

  // ------------------------------------------------------------------ storage

  // One conversation: {messages: [{role, content, status?, model?}], system, model}.
  // role is "user", "assistant" or "error"; errors are shown, never sent to the model.
  function loadState() {
    const fresh = { messages: [], system: "", model: "" };
    let saved;
    try {
      saved = JSON.parse(localStorage.getItem(STATE_KEY) || "null");
    } catch {
      return fresh; // corrupt or unreadable storage: start over rather than break the page
    }
    if (!saved || typeof saved !== "object") return fresh;
    const messages = Array.isArray(saved.messages) ? saved.messages : [];
    return {
      messages: messages
        .filter((m) => m && ["user", "assistant", "error"].includes(m.role))
        .map((m) => ({
          role: m.role,
          content: String(m.content ?? ""),
          // An answer that was still streaming when the page went away was cut short.
          status: m.status === "streaming" ? "interrupted" : m.status,
          model: m.model,
        })),
      system: typeof saved.system === "string" ? saved.system : "",
      model: typeof saved.model === "string" ? saved.model : "",
    };
  }

  const state = loadState();

  let leaving = false; // the page is being unloaded (see "pagehide" below)

  function saveState() {
    if (leaving) return;
    try {
      localStorage.setItem(STATE_KEY, JSON.stringify(state));
    } catch {
      // Storage full or disabled (private mode): the chat still works, it just won't persist.
    }
  }

  function getApiKey() {
    try {
      return localStorage.getItem(API_KEY_KEY) || "";
    } catch {
      return "";
    }
  }

  function setApiKey(key) {
    try {
      if (key) localStorage.setItem(API_KEY_KEY, key);
      else localStorage.removeItem(API_KEY_KEY);
    } catch {
      // ignored as in saveState
    }
  }

  // ------------------------------------------------------------------ rendering

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  // Model output is untrusted. Two layers:
  // 1. marked never passes raw HTML through: HTML blocks and inline tags in the
  //    Markdown are rendered as escaped text, and images become plain links (a
  //    remote image would leak the conversation to whoever the model names).
  // 2. DOMPurify sanitizes what marked produced, in case a Markdown construct
  //    yields something dangerous (javascript: links, event handler attributes).
  // If either library failed to load, answers are shown as plain text.
  const markdown =
    window.marked && window.DOMPurify
      ? new window.marked.Marked(
          { gfm: true, breaks: false, async: false },
          {
            renderer: {
              html({ text }) {
                return escapeHtml(text);
              },
              image({ href, text }) {
                return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
              },
            },
          },
        )
      : null;

  const PURIFY_CONFIG = {
    USE_PROFILES: { html: true }, // no SVG or MathML
    FORBID_TAGS: ["style", "img", "form", "button", "textarea", "select", "iframe"],
    FORBID_ATTR: ["style"],
    ALLOW_DATA_ATTR: false,
  };

  if (window.DOMPurify) {
    // Links in answers open in a new tab and tell the target nothing about this page.
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
  }

  function renderMarkdown(el, text) {
    if (!markdown) {
      el.textContent = text;
      return;
    }
    el.innerHTML = window.DOMPurify.sanitize(markdown.parse(text), PURIFY_CONFIG);
    if (navigator.clipboard) {
      for (const pre of el.querySelectorAll("pre")) addCopyButton(pre);
    }
  }

  function addCopyButton(pre) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", () => {
      const code = pre.querySelector("code") || pre;
      navigator.clipboard.writeText(code.textContent).then(
        () => flash(button, "Copied"),
        () => flash(button, "Copy failed"),
      );
    });
    pre.append(button);
  }

  function flash(button, text) {
    button.textContent = text;
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  const STATUS_NOTES = {
    stopped: "Stopped.",
    interrupted: "Interrupted: the page was closed or reloaded while the answer streamed.",
    cut: "The answer was cut off: the connection ended before the model finished.",
    length: "The answer hit the token limit.",
  };

  // Each message object maps to its <article>; streaming updates only that one.
  const elements = new Map();

  function messageElement(m) {
    const article = document.createElement("article");
    article.className = `msg ${m.role}`;
    const label = document.createElement("div");
    label.className = "who";
    label.textContent =
      m.role === "user" ? "You" : m.role === "error" ? "Error" : m.model || "Assistant";
    const content = document.createElement("div");
    content.className = "content";
    const note = document.createElement("div");
    note.className = "note";
    article.append(label, content, note);
    return article;
  }

  function updateMessage(m) {
    const article = elements.get(m);
    if (!article) return;
    const content = article.querySelector(".content");
    if (m.role === "assistant") renderMarkdown(content, m.content);
    else content.textContent = m.content; // the user's own text and error messages: never HTML
    article.classList.toggle("streaming", m.status === "streaming");
    article.classList.toggle("pending", m.status === "streaming" && !m.content);
    const waiting = m.status === "streaming" && !m.content && typeof m.ahead === "number";
    article.querySelector(".note").textContent = waiting
      ? `Waiting for the model (${m.ahead} ahead)…`
      : STATUS_NOTES[m.status] || "";
  }

  function renderAll() {
    for (const el of elements.values()) el.remove();
    elements.clear();
    for (const m of state.messages) appendMessageElement(m);
    ui.empty.hidden = state.messages.length > 0;
    scrollToBottom(true);
  }

  function appendMessageElement(m) {
    const article = messageElement(m);
    elements.set(m, article);
    ui.messages.append(article);
    updateMessage(m);
    ui.empty.hidden = true;
  }

  function addMessage(m) {
    state.messages.push(m);
    appendMessageElement(m);
    saveState();
    scrollToBottom(true);
    return m;
  }

  function removeMessage(m) {
    const i = state.messages.indexOf(m);
    if (i >= 0) state.messages.splice(i, 1);
    elements.get(m)?.remove();
    elements.delete(m);
    ui.empty.hidden = state.messages.length > 0;
    saveState();
  }

  function isNearBottom() {
    const box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < FOLLOW_SLACK;
  }

  function scrollToBottom(force) {
    if (force || isNearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  // While streaming, re-render at most once per animation frame: tokens can
  // arrive far faster than the screen refreshes, and Markdown is re-parsed whole.
  let renderQueued = null;
  function scheduleRender(m) {
    if (renderQueued === m) return;
    renderQueued = m;
    const follow = isNearBottom();
    requestAnimationFrame(() => {
      renderQueued = null;
      updateMessage(m);
      saveState();
      if (follow) scrollToBottom(true);
    });
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = !text;
  }

  // ------------------------------------------------------------------ errors

  class ChatError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // Seconds to wait, from retry-after-ms or retry-after (seconds or an HTTP date).
  function retryAfterSeconds(headers) {
    const ms = Number.parseFloat(headers.get("retry-after-ms") ?? "");
    if (Number.isFinite(ms) && ms >= 0) return Math.ceil(ms / 1000);
    const value = headers.get("retry-after");
    if (!value) return null;
    const seconds = Number(value.trim());
    if (value.trim() !== "" && Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    const date = Date.parse(value);
    if (Number.isNaN(date)) return null;
    return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }

  // The gateway answers errors in OpenAI's shape: {"error": {"message", "type", "code"}}.
  // Anything else (an HTML page from a proxy, empty body) gives no message of its own.
  function errorMessageFrom(text) {
    try {
      const body = JSON.parse(text);
      const error = body && body.error;
      if (error && typeof error.message === "string") return error.message;
      if (typeof error === "string") return error;
      if (body && typeof body.message === "string") return body.message;
    } catch {
      // not JSON
    }
    return "";
  }

  async function httpError(resp) {
    let detail = "";
    try {
      detail = errorMessageFrom(await resp.text());
    } catch {
      // body unreadable: the status alone still says what happened
    }
    const s = resp.status;
    const tail = detail ? `: ${detail}${/[.!?]$/.test(detail) ? "" : "."}` : ".";
    let text;
    if (s === 401) {
      text = getApiKey()
        ? `The gateway rejected the API key (401)${tail}`
        : `The gateway requires an API key (401)${tail}`;
    } else if (s === 403) {
      text = `Not allowed (403)${tail}`;
    } else if (s === 404) {
      text = `Not found (404)${tail}`;
    } else if (s === 413) {
      text = `The conversation is too large for the gateway (413)${tail} Start a new chat.`;
    } else if (s === 429) {
      const wait = retryAfterSeconds(resp.headers);
      text = `Too many requests (429)${tail}`;
      if (wait !== null) text += ` Try again in ${wait} s.`;
    } else if (s >= 400 && s < 500) {
      text = `The gateway refused the request (${s})${tail}`;
    } else if (s === 502 || s === 503 || s === 504) {
      text = `The model server behind the gateway is unavailable (${s})${tail}`;
    } else {
      text = `The gateway failed (${s})${tail}`;
    }
    return new ChatError(text, s);
  }

  function networkError() {
    return new ChatError(
      "Could not reach the gateway. Is ails serve still running? Check the connection and try again.",
      0,
    );
  }

  // ------------------------------------------------------------------ HTTP

  function authHeaders() {
    const key = getApiKey();
    // The key goes only to this page's own origin (relative URLs, same-origin fetch).
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // Reads a server-sent event stream (the WHATWG format as OpenAI uses it).
  // Calls onData(text) for each event's data and onComment(text) for each comment
  // line; resolves true when `data: [DONE]` arrived, false when the body ended without it.
  async function readEvents(body, onData, onComment) {
    const reader = body.getReader();
    const decoder = new TextDecoder(); // strips a leading BOM; {stream: true} keeps split UTF-8 whole
    let buffer = "";
    const dispatch = (block) => {
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        else if (line.startsWith(":") && onComment) onComment(line.slice(1).trim());
        // event:, id: and retry: lines carry nothing we use
      }
      if (data.length === 0) return false; // an event without data is not dispatched
      const text = data.join("\n");
      if (text === "[DONE]") return true;
      onData(text);
      return false;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // Lines may end in \r\n, \n or \r; a \r at the very end may be the first half
        // of a \r\n split across reads, so it waits for the next read.
        buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (dispatch(block)) return true;
        }
      }
      buffer = (buffer + decoder.decode()).replace(/\r\n?/g, "\n");
      return buffer.trim() !== "" && dispatch(buffer);
    } finally {
      // On [DONE], on an error event or a bad chunk: release the connection, so a
      // gateway still generating sees its client go and stops.
      reader.cancel().catch(() => {});
    }
  }

  // ------------------------------------------------------------------ models

  async function loadModels() {
    let resp;
    try {
      resp = await fetch("v1/models", { headers: authHeaders(), cache: "no-store" });
    } catch {
      fillModels([]);
      showNotice(networkError().message);
      return;
    }
    if (!resp.ok) {
      const err = await httpError(resp);
      fillModels([]);
      if (err.status === 401) askForKey(err.message);
      else showNotice(`Could not list the models. ${err.message}`);
      return;
    }
    let ids = [];
    try {
      const body = await resp.json();
      ids = (Array.isArray(body.data) ? body.data : [])
        .map((m) => m && m.id)
        .filter((id) => typeof id === "string" && id);
    } catch {
      showNotice("The gateway's model list is not valid JSON.");
    }
    fillModels(ids);
    if (ids.length === 0) showNotice("The gateway lists no models.");
    else showNotice("");
  }

  function fillModels(ids) {
    const list = [...ids];
    // Keep the remembered model selectable while the list is unavailable (e.g. before a key).
    if (list.length === 0 && state.model) list.push(state.model);
    const option = (value, text) => {
      const el = document.createElement("option");
      el.value = value;
      el.textContent = text;
      return el;
    };
    ui.model.replaceChildren(...list.map((id) => option(id, id)));
    if (list.length === 0) ui.model.append(option("", "(no models listed)"));
    if (list.includes(state.model)) ui.model.value = state.model;
    else if (list.length > 0) {
      state.model = list[0];
      ui.model.value = state.model;
      saveState();
    }
  }

  // ------------------------------------------------------------------ API key

  function askForKey(reason) {
    ui.keyReason.textContent = reason;
    ui.keyPanel.hidden = false;
    ui.apiKey.value = getApiKey();
    ui.apiKey.focus();
  }

  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(ui.apiKey.value.trim());
    ui.keyPanel.hidden = true;
    ui.keyReason.textContent = "";
    loadModels();
    ui.prompt.focus();
  });

  ui.keyForget.addEventListener("click", () => {
    setApiKey("");
    ui.apiKey.value = "";
    ui.keyPanel.hidden = true;
    loadModels();
  });

  // ------------------------------------------------------------------ chat

  let current = null; // {controller, reply} while an answer streams

  function setBusy(busy) {
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.composer.classList.toggle("busy", busy);
  }

  function requestMessages() {
    const out = [];
    if (state.system.trim()) out.push({ role: "system", content: state.system });
    for (const m of state.messages) {
      if ((m.role === "user" || m.role === "assistant") && m.content) {
        out.push({ role: m.role, content: m.content });
      }
    }
    return out;
  }

  async function send(text) {
    if (current || !text.trim()) return;
    // With no model listed (no key yet, an empty list) the request still goes:
    // the gateway's answer (401, 400, 404) is the most precise message there is.
    const model = ui.model.value || state.model;
    ui.prompt.value = "";
    autosize();
    showNotice("");
    const question = addMessage({ role: "user", content: text });
    const body = JSON.stringify({ model, messages: requestMessages(), stream: true });
    const reply = addMessage({ role: "assistant", content: "", status: "streaming", model });
    const controller = new AbortController();
    current = { controller, reply };
    setBusy(true);

    let finish = null;
    try {
      let resp;
      try {
        resp = await fetch("v1/chat/completions", {
          method: "POST",
          headers: { "Content-Type": "application/json", ...authHeaders() },
          body,
          signal: controller.signal,
          cache: "no-store",
        });
      } catch (e) {
        throw controller.signal.aborted ? e : networkError();
      }
      if (!resp.ok) throw await httpError(resp);
      const done = await readEvents(resp.body, (data) => {
        let event;
        try {
          event = JSON.parse(data);
        } catch {
          throw new ChatError("The gateway sent an event that is not JSON.", 0);
        }
        // An error after the answer started arrives in-band, in the stream.
        if (event.error) {
          const message = errorMessageFrom(JSON.stringify(event)) || "unknown error";
          throw new ChatError(`The model failed mid-answer: ${message}`, 0);
        }
        const choice = Array.isArray(event.choices) ? event.choices[0] : null;
        if (!choice) return; // e.g. the usage chunk
        const delta = choice.delta && choice.delta.content;
        if (typeof delta === "string" && delta) {
          reply.content += delta;
          scheduleRender(reply);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }, (comment) => {
        // ": queued ahead=N": the model is busy; say so until the answer starts.
        const queued = /^queued ahead=(\d+)$/.exec(comment);
        if (queued && !reply.content) {
          reply.ahead = Number(queued[1]);
          updateMessage(reply);
        }
      });
      reply.status = !done && !finish ? "cut" : finish === "length" ? "length" : "done";
    } catch (e) {
      if (controller.signal.aborted) {
        // Stop: aborting the fetch closes the connection, and the gateway
        // cancels the generation when its client goes away.
        reply.status = "stopped";
      } else {
        reply.status = reply.content ? "cut" : "done";
        const message =
          e instanceof ChatError ? e.message : `Reading the answer failed: ${e.message || e}`;
        if (!reply.content) {
          // Nothing was answered: take the question back into the composer so it
          // can be sent again (after entering a key, waiting out a 429, ...).
          removeMessage(reply);
          removeMessage(question);
          if (!ui.prompt.value) {
            ui.prompt.value = text;
            autosize();
          }
        }
        addMessage({ role: "error", content: message });
        if (e instanceof ChatError && e.status === 401) askForKey(message);
      }
    } finally {
      current = null;
      setBusy(false);
      if (state.messages.includes(reply)) updateMessage(reply);
      saveState();
      scrollToBottom(false);
    }
  }

  function stop() {
    if (current) current.controller.abort();
  }

  // ------------------------------------------------------------------ composer

  function autosize() {
    ui.prompt.style.height = "auto";
    ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 240)}px`;
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send(ui.prompt.value);
  });

  ui.prompt.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter falls through to the textarea's own newline.
    // While an IME composes (e.g. Japanese input), Enter confirms the composition instead.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    } else if (event.key === "Escape" && current) {
      stop();
    }
  });
  ui.prompt.addEventListener("input", autosize);
  ui.stop.addEventListener("click", stop);

  ui.model.addEventListener("change", () => {
    state.model = ui.model.value;
    saveState();
  });

  // A dot on the Settings button says a system prompt is in effect while the panel is closed.
  function markSystemPrompt() {
    ui.settingsToggle.classList.toggle("has-system", state.system.trim() !== "");
  }

  ui.system.addEventListener("input", () => {
    state.system = ui.system.value;
    markSystemPrompt();
    saveState();
  });

  ui.settingsToggle.addEventListener("click", () => {
    const open = ui.settings.hidden;
    ui.settings.hidden = !open;
    ui.settingsToggle.setAttribute("aria-expanded", String(open));
    if (open) ui.system.focus();
  });

  ui.newChat.addEventListener("click", () => {
    stop();
    state.messages = [];
    saveState();
    renderAll();
    showNotice("");
    ui.prompt.focus();
  });

  // Renders are throttled to animation frames, and so are saves while an answer
  // streams: save what arrived when the page goes away (reload, tab closed).
  // The browser then ends the fetch, which would read as a cut-off answer: after
  // this last save nothing more is stored, unless the page comes back (bfcache).
  window.addEventListener("pagehide", () => {
    if (current) current.reply.status = "interrupted";
    saveState();
    leaving = true;
  });
  window.addEventListener("pageshow", () => {
    leaving = false;
  });

  // ------------------------------------------------------------------ start

  ui.system.value = state.system;
  markSystemPrompt();
  fillModels([]);
  renderAll();
  loadModels();
  ui.prompt.focus();
})();
