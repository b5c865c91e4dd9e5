// Front-end of rlhf_lab.ui.labeller.PairLabeller (anywidget ES module, no build step).
//
// Safety rule: model output and imported text are untrusted. Every piece of data goes into the
// page with textContent (never innerHTML), so "<script>" or "<img onerror=...>" shows as text.
//
// Keyboard: keydown is handled on the widget's focusable root and never propagates further, so
// JupyterLab's command-mode shortcuts (1/2 = heading, b = insert below, ...) do not fire while the
// widget has focus. The kernel de-duplicates judgements by the item's sequence number.

const LETTERS = "ABCDEFGHIJ";

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(label, key, title, onClick, extraClass) {
  const b = h("button", "rl-btn" + (extraClass ? " " + extraClass : ""));
  b.type = "button";
  b.title = title;
  b.append(h("span", "rl-btn-label", label));
  if (key) b.append(h("kbd", "rl-kbd", key));
  b.addEventListener("click", (event) => {
    event.preventDefault();
    onClick();
  });
  return b;
}

function isTyping(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
}

function render({ model, el }) {
  const root = h("div", "rl-labeller");
  root.tabIndex = 0;
  // Lumino also skips its shortcut matching for events from inside such an element.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("role", "application");
  root.setAttribute("aria-label", "Preference labeller");

  // header: criterion, annotator, progress
  const header = h("div", "rl-header");
  const criterion = h("span", "rl-pill rl-criterion");
  // The annotator name is editable: workshop participants label under their own name. Keys typed
  // here are the input's (see isTyping in onKeydown), like the note field; Enter or leaving the
  // field sends the name, the kernel checks it and sends back the name in force.
  const annotator = h("label", "rl-annotator", "annotator ");
  const nameInput = h("input", "rl-annotator-name");
  nameInput.type = "text";
  nameInput.spellcheck = false;
  nameInput.autocomplete = "off";
  nameInput.placeholder = "your name";
  nameInput.title = "Your annotator name: Enter to apply, Esc to cancel";
  nameInput.setAttribute("aria-label", "Annotator name");
  annotator.append(nameInput);
  const progress = h("span", "rl-progress");
  header.append(criterion, annotator, progress);

  const guide = h("details", "rl-guideline");
  guide.open = true;
  const guideSummary = h("summary", null, "Guideline");
  const guideText = h("div", "rl-guideline-text");
  guide.append(guideSummary, guideText);

  const promptBox = h("div", "rl-prompt");
  const promptHead = h("div", "rl-section-title", "Prompt");
  const promptOrigin = h("span", "rl-origin");
  promptHead.append(promptOrigin);
  const promptText = h("div", "rl-text rl-prompt-text");
  promptBox.append(promptHead, promptText);

  const cards = h("div", "rl-responses");
  const actions = h("div", "rl-actions");
  const noteRow = h("div", "rl-note-row");
  const note = h("input", "rl-note");
  note.type = "text";
  note.placeholder = "Optional note: why? (typing here never triggers shortcuts; Esc leaves)";
  note.setAttribute("aria-label", "Note");
  noteRow.append(note);
  const status = h("div", "rl-status");
  status.setAttribute("aria-live", "polite");
  const help = h("div", "rl-help");
  const empty = h("div", "rl-empty");

  root.append(header, guide, promptBox, cards, actions, noteRow, status, help, empty);
  el.append(root);

  // ---------------------------------------------------------------- local state
  let order = []; // rank mode: indices clicked, best first
  let scores = []; // likert mode: one score (or 0) per response
  let sentSeq = -1; // the item we already sent a judgement for (the kernel checks too)
  let nameEditing = false; // the name field holds text not yet sent to the kernel

  const item = () => model.get("item") || {};
  const responses = () => item().responses || [];
  const hasItem = () => responses().length > 0;

  // ---------------------------------------------------------------- the kernel connection
  // After a kernel restart (or crash) that this page saw, this view's comm is gone and model.send
  // throws ("Cannot send"); the new kernel knows nothing of this widget. Say so, and never look as
  // if a label was taken. A restart this page did not see (another tab, the REST API) leaves the
  // send going nowhere: the reply that does not come within REPLY_MS is reported instead, as for a
  // busy kernel. Either way nothing shows as recorded without the kernel's answer.
  const REPLY_MS = 8000;
  const DEAD =
    "The kernel restarted or stopped, so this labeller is no longer connected: re-run this cell " +
    "to label again. Nothing was recorded for this click; every label shown as recorded before is in the store.";
  let dead = false;
  let replyTimer = null;

  function markDead() {
    dead = true;
    clearTimeout(replyTimer);
    root.classList.remove("rl-pending");
    root.classList.add("rl-disconnected");
    sentSeq = -1;
    status.textContent = DEAD;
    status.className = "rl-status rl-status-error rl-status-dead";
  }

  function replied() {
    clearTimeout(replyTimer);
    replyTimer = null;
  }

  function send(action, extra) {
    if (dead) return markDead();
    const seq = item().seq;
    if (action !== "undo" && (!hasItem() || sentSeq === seq)) return;
    try {
      model.send(Object.assign({ action, seq, note: note.value }, extra || {}));
    } catch (err) {
      return markDead();
    }
    if (action !== "undo") sentSeq = seq;
    root.classList.add("rl-pending");
    clearTimeout(replyTimer);
    replyTimer = setTimeout(() => {
      if (dead) return;
      root.classList.remove("rl-pending");
      sentSeq = -1; // a retry is safe: the kernel records one judgement per item
      status.textContent =
        "No answer from the kernel yet: it is busy running another cell (the label is recorded when it " +
        "finishes) or it has stopped (then re-run this cell). Nothing is shown as recorded until it answers.";
      status.className = "rl-status rl-status-error";
    }, REPLY_MS);
  }

  // ---------------------------------------------------------------- drawing
  function drawHeader() {
    criterion.textContent = model.get("criterion") || "no criterion";
    // never overwrite a name that is being typed
    if (!nameEditing || document.activeElement !== nameInput) {
      nameInput.value = model.get("annotator") || "";
      nameEditing = false;
    }
    guideText.textContent = model.get("guideline") || "";
    guide.hidden = !model.get("guideline");
    const p = model.get("progress") || {};
    const parts = [`${p.session || 0} labelled this session`, `${p.left || 0} left`];
    if (p.total !== null && p.total !== undefined) {
      const people = Object.entries(p.by_annotator || {})
        .map(([name, n]) => `${name} ${n}`)
        .join(", ");
      parts.push(`store: ${p.total} labels` + (people ? ` (${people})` : ""));
    }
    progress.textContent = parts.join(" · ");
    // what an empty queue means to whoever is looking: done for now, or nothing sent yet
    empty.textContent = p.session
      ? "All done for now: nothing left in the queue. New items appear here when the notebook adds them."
      : "Nothing to label yet: items appear here when the notebook adds them (labeller.add(items)).";
  }

  function drawStatus() {
    replied();
    if (dead) return;
    const kind = model.get("status_kind") || "info";
    status.textContent = model.get("status") || "";
    status.className = "rl-status rl-status-" + kind;
    if (kind === "error") {
      // the kernel refused: allow another try on the same item
      sentSeq = -1;
      root.classList.remove("rl-pending");
    }
  }

  function drawUndo() {
    root.classList.toggle("rl-no-undo", !model.get("can_undo"));
  }

  function drawCards() {
    const mode = model.get("mode");
    const rs = responses();
    cards.replaceChildren();
    cards.className = "rl-responses rl-k" + Math.min(rs.length, 4);
    rs.forEach((text, i) => {
      const card = h("div", "rl-card");
      card.dataset.index = String(i);
      const head = h("div", "rl-card-head");
      head.append(h("span", "rl-card-letter", mode === "pair" ? `Response ${LETTERS[i]}` : `Response ${i + 1}`));
      if (mode !== "likert") head.append(h("kbd", "rl-kbd", String(i + 1)));
      const badge = h("span", "rl-rank-badge");
      head.append(badge);
      const body = h("div", "rl-text rl-response-text", text);
      card.append(head, body);
      if (mode === "rank") {
        card.classList.add("rl-clickable");
        card.addEventListener("click", () => toggleRank(i));
      }
      if (mode === "likert") {
        const row = h("div", "rl-likert");
        row.append(h("span", "rl-likert-label", "bad"));
        for (let s = 1; s <= 5; s++) {
          const b = h("button", "rl-likert-btn", String(s));
          b.type = "button";
          b.dataset.score = String(s);
          b.addEventListener("click", () => {
            scores[i] = s;
            drawSelection();
          });
          row.append(b);
        }
        row.append(h("span", "rl-likert-label", "good"));
        card.append(row);
      }
      cards.append(card);
    });
    drawSelection();
  }

  function drawSelection() {
    const mode = model.get("mode");
    cards.querySelectorAll(".rl-card").forEach((card) => {
      const i = Number(card.dataset.index);
      const badge = card.querySelector(".rl-rank-badge");
      const rank = order.indexOf(i);
      badge.textContent = mode === "rank" && rank >= 0 ? `#${rank + 1}` : "";
      card.classList.toggle("rl-selected", mode === "rank" && rank >= 0);
      card.querySelectorAll(".rl-likert-btn").forEach((b) => {
        b.classList.toggle("rl-on", Number(b.dataset.score) === scores[i]);
      });
    });
    if (submitBtn) {
      const ready =
        mode === "rank" ? order.length === responses().length : scores.length === responses().length && scores.every((s) => s > 0);
      submitBtn.classList.toggle("rl-ready", ready);
    }
  }

  let submitBtn = null;
  function drawActions() {
    const mode = model.get("mode");
    actions.replaceChildren();
    submitBtn = null;
    if (mode === "pair") {
      actions.append(
        button("A is better", "1", "Prefer response A (key 1)", () => send("A"), "rl-primary"),
        button("B is better", "2", "Prefer response B (key 2)", () => send("B"), "rl-primary"),
        button("Tie", "t", "Equally good (key t)", () => send("tie")),
        button("Both bad", "b", "Neither is acceptable (key b)", () => send("both_bad")),
      );
    } else {
      submitBtn = button(
        mode === "rank" ? "Submit ranking" : "Submit scores",
        "Enter",
        "Record this judgement (Enter)",
        submit,
        "rl-primary rl-submit",
      );
      actions.append(submitBtn);
      if (mode === "rank") actions.append(button("Clear", "c", "Start the ranking again (key c)", clearLocal));
    }
    actions.append(
      h("span", "rl-spacer"),
      button("Skip", "s", "Skip this item (key s)", () => send("skip"), "rl-quiet"),
      button("Undo", "u", "Remove your last label and show it again (key u)", () => send("undo"), "rl-quiet rl-undo"),
    );
    const keys =
      mode === "pair"
        ? "Keys: 1 = A, 2 = B, t = tie, b = both bad, s = skip, u = undo."
        : mode === "rank"
          ? "Keys: press response numbers best first, Enter = submit, c = clear, s = skip, u = undo."
          : "Click a score for every response, then Enter = submit, s = skip, u = undo.";
    help.textContent = keys + " Click the widget first so it has the keyboard.";
  }

  function clearLocal() {
    order = [];
    scores = [];
    drawSelection();
  }

  function toggleRank(i) {
    const at = order.indexOf(i);
    if (at >= 0) order.splice(at, 1);
    else order.push(i);
    drawSelection();
  }

  function submit() {
    const mode = model.get("mode");
    const n = responses().length;
    if (mode === "rank") {
      if (order.length !== n) return flash("Rank every response first (click them best first).");
      send("rank", { order: order.slice() });
    } else if (mode === "likert") {
      if (scores.length !== n || !scores.every((s) => s > 0)) return flash("Give every response a score first.");
      send("likert", { scores: scores.slice() });
    }
  }

  function flash(message) {
    status.textContent = message;
    status.className = "rl-status rl-status-error";
  }

  function drawItem() {
    replied();
    const hadFocus = root.contains(document.activeElement);
    const it = item();
    root.classList.remove("rl-pending");
    order = [];
    scores = [];
    const show = hasItem();
    promptText.textContent = show ? it.prompt : "";
    promptOrigin.textContent = show && it.origin ? `from ${it.origin}` : "";
    for (const part of [promptBox, cards, actions, noteRow, help]) part.hidden = !show;
    empty.hidden = show;
    drawCards();
    // a new item clears the note, but not while the labeller is typing it
    if (document.activeElement !== note) note.value = "";
    // re-rendering may remove the focused element; keep the keyboard on the widget
    if (hadFocus && !root.contains(document.activeElement)) root.focus({ preventScroll: true });
    drawUndo();
  }

  // ---------------------------------------------------------------- annotator name
  function commitName() {
    if (!nameEditing) return;
    nameEditing = false;
    const name = nameInput.value.trim();
    if (name === model.get("annotator")) return;
    model.set("annotator", name); // the kernel validates; an invalid name comes back as the old one
    model.save_changes();
  }
  nameInput.addEventListener("input", () => {
    nameEditing = true;
  });
  nameInput.addEventListener("change", commitName); // Enter or leaving the field
  nameInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      commitName();
      event.preventDefault();
    } else if (event.key === "Escape") {
      nameEditing = false;
      nameInput.value = model.get("annotator") || "";
    }
  });

  // ---------------------------------------------------------------- keyboard
  function onKeydown(event) {
    // Modified keys (Ctrl+S, Shift+Enter to run the cell) belong to JupyterLab.
    if (event.ctrlKey || event.metaKey || event.altKey || (event.shiftKey && event.key === "Enter")) return;
    event.stopPropagation();
    if (isTyping(event.target)) {
      if (event.key === "Escape") root.focus({ preventScroll: true });
      return;
    }
    if (event.target && event.target.tagName === "BUTTON" && (event.key === "Enter" || event.key === " ")) {
      return; // let the focused button's own click happen
    }
    const mode = model.get("mode");
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const action = (model.get("shortcuts") || {})[key];
    let handled = true;
    if (action === "skip" || action === "undo") {
      send(action);
    } else if (mode === "pair" && action) {
      send(action);
    } else if (mode === "rank" && /^[1-9]$/.test(key) && Number(key) <= responses().length) {
      toggleRank(Number(key) - 1);
    } else if (mode === "rank" && key === "c") {
      clearLocal();
    } else if (mode !== "pair" && key === "Enter") {
      submit();
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  }
  const stopOnly = (event) => {
    if (!(event.ctrlKey || event.metaKey || event.altKey)) event.stopPropagation();
  };
  root.addEventListener("keydown", onKeydown);
  root.addEventListener("keyup", stopOnly);
  root.addEventListener("keypress", stopOnly);
  // Clicking anywhere in the widget (not a field) gives it the keyboard.
  root.addEventListener("mousedown", (event) => {
    if (!isTyping(event.target) && event.target.tagName !== "BUTTON") {
      setTimeout(() => root.focus({ preventScroll: true }), 0);
    }
  });

  // ---------------------------------------------------------------- wiring
  function drawAll() {
    drawHeader();
    drawActions();
    drawItem();
    drawStatus();
  }
  const handlers = [
    ["change:item", drawItem],
    ["change:progress", drawHeader],
    ["change:criterion", drawHeader],
    ["change:annotator", drawHeader],
    ["change:guideline", drawHeader],
    ["change:status", drawStatus],
    ["change:status_kind", drawStatus],
    ["change:can_undo", drawUndo],
    ["change:mode", drawAll],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  // ipywidgets triggers "comm:close" when the kernel closes this widget's comm: say so at once.
  // (After a kernel restart the comm is disposed instead, and the next send throws: see send.)
  const onClose = () => markDead();
  model.on("comm:close", onClose);
  drawAll();
  return () => {
    clearTimeout(replyTimer);
    model.off("comm:close", onClose);
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
