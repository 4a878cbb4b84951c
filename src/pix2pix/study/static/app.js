// Participant page of a pix2pix perceptual study: no dependencies, everything from this server.
// The server owns the design (trial order, left/right, exposures), hands out one pair at a time under
// a session token it issued, and stores each answer at once; this page shows the pair, times the
// exposure, takes clicks or keys, and retries a failed save.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const match = location.pathname.match(/^\/study\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})\/?$/);
  const studyId = match ? match[1] : null;
  const api = `/api/study/${studyId}`;
  const state = { participant: null, session: null, total: 0, answered: 0, current: null, code: null,
                  shownAt: 0, shownMs: null, hideTimer: null, accepting: false };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));

  class Refused extends Error {}  // the server said no (4xx): retrying would not help

  function show(screen) {
    for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== screen;
    document.body.dataset.screen = screen;
  }

  function fail(message) {
    $("error-text").textContent = message;
    show("error");
  }

  function participantId() {
    const given = new URLSearchParams(location.search).get("participant");
    if (given) return given;  // e.g. a crowd-sourcing worker id passed in the link
    const key = `pix2pix-study-${studyId}`;
    let id = null;
    try { id = localStorage.getItem(key); } catch (e) { /* storage disabled: a fresh id */ }
    if (!id) {
      const bytes = new Uint8Array(12);
      crypto.getRandomValues(bytes);
      id = "p" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      try { localStorage.setItem(key, id); } catch (e) { /* the id lasts this page only */ }
    }
    return id;
  }

  // The session token lives in this browser only: it is what lets a reload continue this participant.
  const sessionKey = (participant) => `pix2pix-study-${studyId}-session-${participant}`;
  function storedSession(participant) {
    try { return localStorage.getItem(sessionKey(participant)); } catch (e) { return null; }
  }
  function storeSession(participant, token) {
    try { localStorage.setItem(sessionKey(participant), token); } catch (e) { /* lasts this page only */ }
  }

  async function post(path, body, tries = 8) {
    let delay = 250;
    for (let attempt = 1; ; attempt++) {
      let problem;
      try {
        const r = await fetch(api + path, { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(body) });
        const data = await r.json().catch(() => ({}));
        if (r.ok) return data;
        problem = data.error || `HTTP ${r.status}`;
        if (r.status < 500 && r.status !== 429) throw new Refused(problem);
      } catch (e) {
        if (e instanceof Refused) throw e;
        problem = problem || e.message;
      }
      if (attempt >= tries) throw new Error(problem);
      $("status").textContent = "Saving… (connection problem, retrying)";
      await sleep(delay);
      delay = Math.min(delay * 2, 4000);
    }
  }

  function loadImage(img, token, side) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve();
      img.onerror = () => reject(new Error(`the ${side} image could not be loaded`));
      img.src = `${api}/image/${token}`;
    }).then(() => (img.decode ? img.decode().catch(() => {}) : undefined));
  }

  async function runNext() {
    const trial = state.current;
    if (!trial) {
      $("done-count").textContent = String(state.total);
      $("done-code").textContent = state.code || "";
      show("done");
      return;
    }
    state.current = trial;
    state.accepting = false;
    const pair = $("pair");
    pair.classList.add("hidden-images");
    pair.classList.remove("locked");
    for (const side of ["left", "right"]) $(`side-${side}`).classList.remove("feedback-correct", "feedback-wrong");
    pair.dataset.trial = String(trial.index);
    pair.dataset.exposure = trial.exposure == null ? "unlimited" : String(trial.exposure);
    pair.dataset.state = "loading";
    $("progress").textContent = `Pair ${state.answered + 1} of ${state.total}`;
    $("practice-tag").hidden = !trial.practice;
    $("status").textContent = trial.exposure == null ? "" : "This pair is shown briefly.";
    show("trial");
    try {
      await Promise.all([loadImage($("img-left"), trial.left, "left"), loadImage($("img-right"), trial.right, "right")]);
    } catch (e) {
      fail(`${e.message}. Reload the page to try again; your answers so far are saved.`);
      return;
    }
    await frame();
    pair.classList.remove("hidden-images");
    await frame();  // the pair is painted from here on
    state.shownAt = performance.now();
    state.shownMs = null;
    pair.dataset.state = "shown";
    state.accepting = true;
    if (trial.exposure != null) {
      state.hideTimer = setTimeout(() => {
        pair.classList.add("hidden-images");
        state.shownMs = performance.now() - state.shownAt;
        pair.dataset.state = "hidden";
        $("status").textContent = "Which one was it?";
      }, trial.exposure * 1000);
    }
  }

  async function answer(side) {
    if (!state.accepting) return;
    state.accepting = false;
    clearTimeout(state.hideTimer);
    const trial = state.current;
    const rt = performance.now() - state.shownAt;
    const shown = state.shownMs == null ? rt : state.shownMs;
    const pair = $("pair");
    pair.classList.add("locked");
    pair.dataset.state = "saving";
    let saved;
    try {
      saved = await post("/answer", { session: state.session, trial: trial.index, choice: side,
                                      rt_ms: Math.round(rt), shown_ms: Math.round(shown) });
    } catch (e) {
      fail(`Your answer could not be saved (${e.message}). Reload the page to continue; saved answers are kept.`);
      return;
    }
    state.answered = saved.answered;
    state.current = saved.next;
    state.code = saved.code;
    if (trial.practice && trial.correct) {
      pair.classList.remove("hidden-images");
      $(`side-${trial.correct}`).classList.add("feedback-correct");
      if (side !== trial.correct) $(`side-${side}`).classList.add("feedback-wrong");
      $("status").textContent = side === trial.correct ? "Correct." : `Not quite: it was the ${trial.correct} one.`;
      await sleep(1200);
    }
    runNext();
  }

  async function start() {
    if (!studyId) {
      fail("This address is not a study page.");
      return;
    }
    state.participant = participantId();
    const token = storedSession(state.participant);
    const nonce = new Uint8Array(18);  // a retried request with the same nonce gets the same session
    crypto.getRandomValues(nonce);
    const fresh = { participant: state.participant,
                    nonce: Array.from(nonce, (b) => b.toString(16).padStart(2, "0")).join("") };
    let session;
    try {
      session = await post("/session", token ? { session: token, participant: state.participant } : fresh, 4);
    } catch (e) {
      fail(`The study could not be opened: ${e.message}`);
      return;
    }
    state.session = session.session;
    storeSession(state.participant, state.session);
    state.total = session.total;
    state.answered = session.answered;
    state.current = session.trial;
    state.code = session.code;
    document.title = "Image study";
    $("question").textContent = session.study.question;
    $("intro-question").textContent = session.study.question;
    $("intro-instructions").textContent = session.study.instructions || "";
    const left = state.total - state.answered;
    $("intro-count").textContent = left === state.total
      ? `There are ${state.total} pairs.` : `Welcome back: ${left} of ${state.total} pairs to go.`;
    if (!state.current) {
      runNext();
      return;
    }
    show("intro");
  }

  $("start").addEventListener("click", () => { if (document.body.dataset.screen === "intro") runNext(); });
  for (const side of ["left", "right"]) $(`side-${side}`).addEventListener("click", () => answer(side));
  document.addEventListener("keydown", (e) => {
    if (e.repeat || e.altKey || e.ctrlKey || e.metaKey) return;
    const screen = document.body.dataset.screen;
    if (screen === "intro" && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      runNext();
    } else if (screen === "trial") {
      const side = { ArrowLeft: "left", 1: "left", ArrowRight: "right", 2: "right" }[e.key];
      if (side) {
        e.preventDefault();
        answer(side);
      }
    }
  });
  start();
})();
