// The integration form in the admin: show only the fields of the chosen kind (the map comes from
// actions.admin.integration_field_map). Without JavaScript every field shows, with its help.
(function () {
  const map = JSON.parse(document.getElementById("integration-field-map").textContent);
  const kind = document.getElementById("id_kind");
  function row(name) { return document.querySelector(".form-row.field-" + name) || document.querySelector(".fieldBox.field-" + name); }
  function sync() {
    // A fixed kind (an integration that exists) renders as text, not a select.
    const chosen = kind ? kind.value : (document.querySelector(".field-kind .readonly") || {}).textContent;
    const shown = new Set(map.kinds[(chosen || "").trim().toLowerCase()] || map.all);
    for (const name of map.all) { const r = row(name); if (r) r.style.display = shown.has(name) ? "" : "none"; }
  }
  if (kind) kind.addEventListener("change", sync);
  sync();
})();
