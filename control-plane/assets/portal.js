// Hangar portal: live updates over server-sent events, live log follow, and upload progress
// with drag-and-drop. Part of Hangar, Apache-2.0. Every page works without this script.
"use strict";
(function () {
  function text(el, value) { if (el) el.textContent = value === null || value === undefined ? "–" : String(value); }

  function setPhase(el, phase) {
    if (!el) return;
    el.textContent = phase;
    el.className = "phase phase-" + phase;
  }

  // The environment list: phases and workers, live; a new or removed environment reloads.
  var list = document.querySelector("table#environments[data-live]");
  if (list && window.EventSource) {
    var es = new EventSource(list.getAttribute("data-live"));
    es.addEventListener("environments", function (ev) {
      var envs = JSON.parse(ev.data);
      var rows = list.querySelectorAll("tbody tr[data-env]");
      if (rows.length !== envs.length) { window.location.reload(); return; }
      envs.forEach(function (e) {
        var row = list.querySelector('tr[data-env="' + CSS.escape(e.name) + '"]');
        if (!row) { window.location.reload(); return; }
        setPhase(row.querySelector('[data-field="phase"]'), e.phase);
        text(row.querySelector('[data-field="workers"]'),
          [e.queued, e.running, e.desired, e.actual].map(function (v) { return v === null || v === undefined ? "–" : v; }).join(" / "));
        text(row.querySelector('[data-field="updated_at"]'), e.updated_at);
      });
    });
  }

  // An environment's page: phase, revision, components and workers, live.
  var status = document.querySelector("#status[data-live]");
  if (status && window.EventSource) {
    var des = new EventSource(status.getAttribute("data-live"));
    des.addEventListener("environment", function (ev) {
      var e = JSON.parse(ev.data);
      setPhase(document.querySelector('#status [data-field="phase"]'), e.phase);
      ["revision", "observed_revision", "queued", "running", "desired", "actual", "draining"].forEach(function (f) {
        document.querySelectorAll('[data-field="' + f + '"]').forEach(function (el) { text(el, e[f]); });
      });
      var sync = document.getElementById("dag-sync");
      if (sync) {
        sync.textContent = e.dag_sync
          ? e.dag_sync.files + (e.dag_sync.error ? " (last sync failed: " + e.dag_sync.error + ")" : "")
          : "–";
      }
      var disk = document.getElementById("log-disk");
      if (disk) {
        disk.textContent = "";
        if (e.log_disk_full_since) {
          var warn = document.createElement("strong");
          warn.className = "warn";
          warn.textContent = "full since " + e.log_disk_full_since +
            ": tasks keep running, log lines written now are dropped";
          disk.appendChild(warn);
        } else {
          disk.textContent = "room to spare";
        }
      }
      var msg = document.querySelector('#status [data-field="status_message"]');
      if (msg) msg.textContent = e.status_message || "";
      var comps = document.getElementById("components");
      if (comps) {
        comps.textContent = "";
        (e.components || []).forEach(function (c) {
          var li = document.createElement("li");
          li.className = c.healthy ? "ok" : "bad";
          li.textContent = c.name + ": " + (c.healthy ? "healthy" : (c.message || "unhealthy"));
          comps.appendChild(li);
        });
      }
    });
  }

  // Logs: follow new lines live.
  var follow = document.getElementById("follow");
  var lines = document.getElementById("log-lines");
  var stream = null;
  if (follow && lines && window.EventSource) {
    follow.addEventListener("change", function () {
      if (stream) { stream.close(); stream = null; }
      if (!follow.checked) return;
      stream = new EventSource(follow.getAttribute("data-follow"));
      stream.addEventListener("line", function (ev) {
        var l = JSON.parse(ev.data);
        var span = document.createElement("span");
        span.className = "line lvl-" + l.level;
        span.textContent = l.ts + " " + l.component + " " + l.level.toUpperCase() + " " + l.message;
        lines.appendChild(span);
        lines.appendChild(document.createTextNode("\n"));
        lines.scrollTop = lines.scrollHeight;
      });
    });
  }

  // Uploads: drag-and-drop onto the form, and a progress bar while the files go up.
  var form = document.querySelector("form[data-upload]");
  if (form && window.FormData && window.XMLHttpRequest) {
    var input = form.querySelector('input[type="file"]');
    var zone = form.querySelector("[data-dropzone]");
    var bar = document.getElementById("upload-progress");
    var dropped = null;
    if (zone) {
      ["dragenter", "dragover"].forEach(function (t) {
        zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (t) {
        zone.addEventListener(t, function () { zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (ev) {
        ev.preventDefault();
        dropped = ev.dataTransfer.files;
        var hint = zone.querySelector(".hint");
        if (hint) hint.textContent = dropped.length + " file(s) ready: " +
          Array.prototype.map.call(dropped, function (f) { return f.name; }).join(", ");
      });
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new FormData();
      data.append("csrf_token", form.querySelector('input[name="csrf_token"]').value);
      var files = dropped && dropped.length ? dropped : input.files;
      Array.prototype.forEach.call(files, function (f) { data.append("files", f, f.name); });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      if (bar) { bar.hidden = false; bar.value = 0; }
      xhr.upload.addEventListener("progress", function (p) {
        if (bar && p.lengthComputable) bar.value = Math.round(100 * p.loaded / p.total);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status < 300) { window.location.assign(xhr.responseURL || window.location.href); return; }
        // A refused upload answers with the page and its error.
        document.open(); document.write(xhr.responseText); document.close();
      });
      xhr.send(data);
    });
  }
})();
