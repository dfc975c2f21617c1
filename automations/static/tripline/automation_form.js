// The automation form in the admin: show only the fields of the chosen scope, event and action
// (the map comes from automations.admin.field_map), offer only the event types the scope
// allows, and preview what the action sends for a sample event. Without JavaScript every field
// shows, each with help saying where it applies, and the saved automation's preview shows.
(function () {
  const map = JSON.parse(document.getElementById("automation-field-map").textContent);
  const script = document.getElementById("automation-form-script");
  function row(name) { return document.querySelector(".form-row.field-" + name) || document.querySelector(".fieldBox.field-" + name); }
  function sync(section, select) {
    const shown = new Set(map[section][select.value] || []);
    for (const name of map.all[section]) { const r = row(name); if (r) r.style.display = shown.has(name) ? "" : "none"; }
  }
  const scope = document.getElementById("id_scope_type"), event = document.getElementById("id_event_type");
  function allowEvents() {
    if (!scope || !event) return;
    const allowed = map.scope_events[scope.value];
    for (const option of event.options) option.disabled = Boolean(option.value && allowed && !allowed.includes(option.value));
  }
  for (const [section, field] of [["scope", "scope_type"], ["event", "event_type"], ["action", "action_type"]]) {
    const select = document.getElementById("id_" + field);
    if (!select) continue;
    select.addEventListener("change", () => { sync(section, select); allowEvents(); });
    sync(section, select);
  }
  allowEvents();

  // Preview: the form as edited goes to the preview endpoint (nothing is saved).
  const area = document.getElementById("action-preview");
  const form = document.getElementById("automation_form");
  if (!area || !form) return;
  const button = document.createElement("button");
  button.type = "button"; button.id = "preview-button"; button.textContent = "Preview"; button.className = "button";
  area.parentNode.insertBefore(button, area);
  button.addEventListener("click", async () => {
    const data = new FormData(form);
    data.set("_pk", script.dataset.pk || "");
    area.classList.remove("errornote");
    area.textContent = "…";
    try {
      const answer = await fetch(script.dataset.previewUrl, {method: "POST", body: data, credentials: "same-origin",
                                                             headers: {"X-CSRFToken": data.get("csrfmiddlewaretoken")}});
      const body = await answer.json();
      if (body.errors) {
        area.classList.add("errornote");
        area.textContent = Object.entries(body.errors).map(([field, errors]) => `${field}: ${errors.join(" ")}`).join("\n");
      } else {
        area.textContent = typeof body.preview === "string" ? body.preview : JSON.stringify(body.preview, null, 2);
      }
    } catch (error) {
      area.textContent = "The preview failed: " + error;
    }
  });
})();
