// portatlas web UI: small progressive enhancements. Every page works without this file.
// Results are built with textContent only (never innerHTML), so nothing from the data or
// the query can become markup.
"use strict";

(function () {
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function hasWord(text) { return /[A-Za-z0-9_+]/.test(text); }

  // -- copy buttons ---------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) resolve(); else reject(new Error("copy failed"));
    });
  }

  function setupCopy() {
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) return;
      button.hidden = false;
      button.setAttribute("aria-label", "Copy: " + target.textContent);
      button.addEventListener("click", function () {
        copyText(target.textContent).then(function () {
          button.textContent = "Copied";
          button.classList.add("done");
          setTimeout(function () { button.textContent = "Copy"; button.classList.remove("done"); }, 1600);
        }, function () { button.textContent = "Select and copy"; });
      });
    });
  }

  // -- search as you type -----------------------------------------------------------------
  function fetchSearch(q, limit, signal) {
    var url = "/api/search?q=" + encodeURIComponent(q) + "&limit=" + limit;
    return fetch(url, { headers: { "Accept": "application/json" }, signal: signal })
      .then(function (r) { return r.ok ? r.json() : { results: [], goto: null }; });
  }

  function resultLink(item) {
    var a = el("a");
    a.href = item.url;
    a.appendChild(el("span", "s-port", (item.ports || "no port") + (item.transport ? "/" + item.transport : "")));
    a.appendChild(el("span", "s-svc", item.result === "note" ? "[note]" : (item.service || "(no name)")));
    a.appendChild(el("span", "s-desc", item.description));
    return a;
  }

  function setupSuggest(input) {
    var list = document.getElementById(input.getAttribute("data-suggest"));
    if (!list) return;
    var timer = null, controller = null, seq = 0;

    function hide() { list.hidden = true; input.setAttribute("aria-expanded", "false"); }
    function links() { return Array.prototype.slice.call(list.querySelectorAll("a")); }

    function show(data, q) {
      list.textContent = "";
      if (data.goto) {
        var li = el("li");
        li.setAttribute("role", "option");
        var a = el("a");
        a.href = data.goto;
        a.appendChild(el("span", "s-port", "go"));
        a.appendChild(el("span", "s-svc", "Open " + q.trim()));
        a.appendChild(el("span", "s-desc", "straight to the page"));
        li.appendChild(a);
        list.appendChild(li);
      }
      data.results.forEach(function (item) {
        var li = el("li");
        li.setAttribute("role", "option");
        li.appendChild(resultLink(item));
        list.appendChild(li);
      });
      if (!list.children.length) list.appendChild(el("li", "s-empty", "Nothing matches; press Enter to search."));
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    function update() {
      var q = input.value;
      if (!q.trim() || !hasWord(q) || q.length > 200) { hide(); return; }
      if (controller) controller.abort();
      controller = new AbortController();
      var mine = ++seq;
      fetchSearch(q, 8, controller.signal).then(function (data) {
        if (mine === seq && input.value === q) show(data, q);
      }, function () { /* aborted or offline: keep what is shown */ });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(update, 110);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" && !list.hidden) {
        var first = links()[0];
        if (first) { event.preventDefault(); first.focus(); }
      } else if (event.key === "Escape") {
        hide();
      }
    });
    list.addEventListener("keydown", function (event) {
      var all = links(), i = all.indexOf(document.activeElement);
      if (event.key === "ArrowDown" && i >= 0 && i < all.length - 1) { event.preventDefault(); all[i + 1].focus(); }
      else if (event.key === "ArrowUp") { event.preventDefault(); if (i > 0) all[i - 1].focus(); else input.focus(); }
      else if (event.key === "Escape") { event.preventDefault(); hide(); input.focus(); }
    });
    input.form.addEventListener("focusout", function (event) {
      if (!input.form.contains(event.relatedTarget)) setTimeout(hide, 150);
    });
  }

  function setupLiveResults(input) {
    var target = document.getElementById(input.getAttribute("data-live-results"));
    if (!target) return;
    var timer = null, controller = null, seq = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = input.value;
        if (!q.trim() || !hasWord(q) || q.length > 200) return;
        if (controller) controller.abort();
        controller = new AbortController();
        var mine = ++seq;
        fetchSearch(q, 50, controller.signal).then(function (data) {
          if (mine !== seq) return;
          target.textContent = "";
          data.results.forEach(function (item) {
            var li = el("li"), a = el("a");
            a.href = item.url;
            a.appendChild(el("span", "r-port", (item.ports || "no port") + (item.transport ? "/" + item.transport : "")));
            a.appendChild(document.createTextNode(" "));
            a.appendChild(el("span", "r-svc", item.result === "note" ? "[note]" : (item.service || "(no name)")));
            a.appendChild(document.createTextNode(" "));
            a.appendChild(el("span", "r-desc", item.description));
            li.appendChild(a);
            target.appendChild(li);
          });
          history.replaceState(null, "", "/search?q=" + encodeURIComponent(q));
        }, function () {});
      }, 110);
    });
  }

  // -- feedback -------------------------------------------------------------------------------
  function setupFeedback(form) {
    var status = form.querySelector(".fb-status");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var helpful = event.submitter ? event.submitter.value === "yes" : true;
      var comment = form.elements.comment.value.trim();
      var payload = { port: parseInt(form.elements.port.value, 10), helpful: helpful, comment: comment || null };
      var buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      status.className = "fb-status";
      status.textContent = "Sending…";
      fetch("/api/feedback", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": form.elements.csrf.value },
        body: JSON.stringify(payload)
      }).then(function (r) {
        return r.json().then(function (data) { return { ok: r.ok, data: data }; });
      }).then(function (res) {
        if (res.ok) {
          status.classList.add("ok");
          status.textContent = "Thank you: your answer was recorded.";
          form.elements.comment.value = "";
        } else {
          status.classList.add("bad");
          status.textContent = res.data.error || "That did not work.";
          buttons.forEach(function (b) { b.disabled = false; });
        }
      }, function () {
        status.classList.add("bad");
        status.textContent = "Could not reach the server.";
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });
  }

  // -- the map --------------------------------------------------------------------------------
  function setupGrid(grid) {
    var card = grid.closest(".card");
    var readout = card ? card.querySelector("[data-readout]") : null;
    var cells = Array.prototype.slice.call(grid.querySelectorAll(".cell"));
    function say(cell) { if (readout && cell) readout.textContent = cell.getAttribute("title"); }
    grid.addEventListener("mouseover", function (event) { say(event.target.closest(".cell")); });
    grid.addEventListener("focusin", function (event) { say(event.target.closest(".cell")); });
    grid.addEventListener("keydown", function (event) {
      var i = cells.indexOf(document.activeElement);
      if (i < 0) return;
      var columns = getComputedStyle(grid).gridTemplateColumns.split(" ").length;
      var next = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + columns, ArrowUp: i - columns,
                   Home: 0, End: cells.length - 1 }[event.key];
      if (next === undefined || next < 0 || next >= cells.length) return;
      event.preventDefault();
      cells[i].tabIndex = -1;
      cells[next].tabIndex = 0;
      cells[next].focus();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    document.querySelectorAll("input[data-suggest]").forEach(setupSuggest);
    document.querySelectorAll("input[data-live-results]").forEach(setupLiveResults);
    document.querySelectorAll("form[data-feedback]").forEach(setupFeedback);
    document.querySelectorAll("[data-grid]").forEach(setupGrid);
  });
})();
