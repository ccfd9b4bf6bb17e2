// Refreshes the live calls table every second from /api/live (same origin, the cookie).
"use strict";
(function () {
  const body = document.querySelector("#live tbody");
  const count = document.getElementById("count");
  const updated = document.getElementById("updated");
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  async function refresh() {
    try {
      const response = await fetch("/api/live", {credentials: "same-origin"});
      if (response.status === 401) { window.location = "/login?next=%2F"; return; }
      const data = await response.json();
      body.replaceChildren();
      for (const call of data.calls) {
        const row = document.createElement("tr");
        cell(row, call.session_id); cell(row, call.tenant); cell(row, call.number);
        cell(row, call.caller);
        cell(row, call.state, "state"); cell(row, call.duration_s + " s"); cell(row, call.turns);
        body.appendChild(row);
      }
      if (!data.calls.length) {
        const row = document.createElement("tr");
        row.className = "empty";
        const td = document.createElement("td");
        td.colSpan = 7; td.textContent = "No calls right now.";
        row.appendChild(td); body.appendChild(row);
      }
      count.textContent = data.calls.length;
      updated.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      updated.dataset.updates = String(Number(updated.dataset.updates || 0) + 1);
    } catch (error) {
      updated.textContent = "Cannot reach the agent (" + error + ").";
    }
  }
  setInterval(refresh, 1000);
})();
