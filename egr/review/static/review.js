// egr review: keyboard shortcuts for the answers list and the answer view. No build step.
"use strict";
(function () {
  const body = document.body;
  const view = body.dataset.view;
  const typing = (e) => ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName);
  const go = (url) => { if (url) window.location.href = url; };

  if (view === "answers") {
    const rows = Array.from(document.querySelectorAll("#answers tr.row"));
    let sel = rows.length ? 0 : -1;
    const show = () => rows.forEach((r, i) => r.classList.toggle("sel", i === sel));
    show();
    rows.forEach((r, i) => r.addEventListener("click", (e) => {
      if (e.target.tagName !== "A") go(r.dataset.href);
    }));
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (typing(e)) {
        if (e.key === "Escape") e.target.blur();
        return;
      }
      if (e.key === "j" && sel < rows.length - 1) { sel++; show(); rows[sel].scrollIntoView({block: "nearest"}); }
      else if (e.key === "k" && sel > 0) { sel--; show(); rows[sel].scrollIntoView({block: "nearest"}); }
      else if ((e.key === "Enter" || e.key === "o") && sel >= 0) go(rows[sel].dataset.href);
      else if (e.key === "/") { e.preventDefault(); document.getElementById("f-doc").focus(); }
      else if (e.key === "]") { const a = document.getElementById("next-page"); if (a) go(a.href); }
      else if (e.key === "[") { const a = document.getElementById("prev-page"); if (a) go(a.href); }
      else return;
      e.preventDefault();
    });
  }

  if (view === "answer") {
    const form = document.getElementById("corrected-form");
    const text = document.getElementById("corrected-text");
    const status = document.getElementById("save-status");
    const verdictEl = document.getElementById("verdict");
    let busy = false;

    const newId = () => (window.crypto && crypto.randomUUID)
      ? crypto.randomUUID()
      : Date.now().toString(36) + Math.random().toString(36).slice(2);

    async function mark(verdict, corrected) {
      if (busy) return;
      busy = true;
      status.textContent = "saving…";
      const payload = {
        run_id: body.dataset.run, work_key: body.dataset.key, verdict: verdict,
        corrected_answer: verdict === "corrected" ? corrected : null, submission: newId(),
      };
      let res;
      for (let attempt = 0; attempt < 3; attempt++) {  // the same submission id on a retry
        try {
          res = await fetch("/api/review", {
            method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify(payload),
          });
          break;
        } catch (err) { status.textContent = "network error, retrying…"; }
      }
      busy = false;
      if (!res) { status.textContent = "not saved: the server does not answer"; return; }
      const out = await res.json();
      if (!res.ok) { status.textContent = "not saved: " + (out.error || res.status); return; }
      verdictEl.textContent = out.verdict + (out.corrected_answer ? " → " + out.corrected_answer : "");
      verdictEl.className = "v-" + out.verdict;
      status.textContent = "saved (" + out.review_id.slice(0, 8) + ")";
      body.dataset.saved = out.review_id;
      if (body.dataset.afterMark) setTimeout(() => go(body.dataset.afterMark), 250);
    }

    function openCorrected() {
      form.hidden = false;
      text.value = body.dataset.expected || body.dataset.answer || "";
      text.focus();
      text.select();
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (text.value.trim()) { form.hidden = true; mark("corrected", text.value.trim()); }
    });
    text.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { form.hidden = true; text.blur(); }
    });
    document.querySelectorAll("button[data-verdict]").forEach((b) => b.addEventListener("click", () => {
      if (b.dataset.verdict === "corrected") openCorrected(); else mark(b.dataset.verdict, null);
    }));
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
      if (e.key === "c") mark("correct", null);
      else if (e.key === "w") mark("wrong", null);
      else if (e.key === "x") openCorrected();
      else if (e.key === "n" || e.key === "j") go(body.dataset.next);
      else if (e.key === "p" || e.key === "k") go(body.dataset.prev);
      else if (e.key === "u" || e.key === "Escape") go(body.dataset.list);
      else return;
      e.preventDefault();
    });
  }
})();
