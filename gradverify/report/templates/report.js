// Sorting (click a header) and filtering of the report's tables. No data lives here: the
// script only reads the page's own attributes (data-v, data-name, data-family, data-passed,
// data-outcome).
(function () {
  "use strict";

  function cellValue(row, index, type) {
    var raw = row.cells[index] ? row.cells[index].getAttribute("data-v") : "";
    if (type === "num") {
      return raw === "" || raw === null ? null : parseFloat(raw);
    }
    return (raw || "").toLowerCase();
  }

  function compare(a, b, ascending) {
    if (a === b) { return 0; }
    if (a === null) { return 1; }  // rows without a value go last either way
    if (b === null) { return -1; }
    return (a < b ? -1 : 1) * (ascending ? 1 : -1);
  }

  // The column of a header cell in body rows, accounting for colspans of the header row
  // and the row-spanning cells of the first header row.
  function columnIndex(th) {
    var head = th.closest("thead");
    var rows = head.rows;
    if (rows.length === 1 || th.parentElement === rows[0]) {
      var index = 0;
      for (var c = th.previousElementSibling; c; c = c.previousElementSibling) { index += c.colSpan; }
      return index;
    }
    // A second-row header: its position among the grouped columns of the first row.
    var slots = [], i, j;
    for (i = 0, j = 0; i < rows[0].cells.length; i++) {
      var top = rows[0].cells[i];
      for (var k = 0; k < top.colSpan; k++) { if (top.rowSpan < 2) { slots.push(j + k); } }
      j += top.colSpan;
    }
    return slots[Array.prototype.indexOf.call(th.parentElement.cells, th)];
  }

  function makeSortable(table) {
    var headers = table.querySelectorAll("thead th[data-type]");
    Array.prototype.forEach.call(headers, function (th) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var index = columnIndex(th), type = th.getAttribute("data-type");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) { return compare(cellValue(r1, index, type), cellValue(r2, index, type), ascending); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function setUpFilter() {
    var table = document.getElementById("op-table");
    if (!table) { return; }
    var text = document.getElementById("op-filter");
    var family = document.getElementById("family-filter");
    var failed = document.getElementById("failed-only");
    var count = document.getElementById("op-count");
    function apply() {
      var needle = text.value.trim().toLowerCase(), shown = 0;
      var rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        var keep = (!needle || r.getAttribute("data-name").toLowerCase().indexOf(needle) >= 0) &&
          (!family.value || r.getAttribute("data-family") === family.value) &&
          (!failed.checked || r.getAttribute("data-passed") === "no");
        r.hidden = !keep;
        shown += keep ? 1 : 0;
      }
      count.textContent = shown + " of " + rows.length + " ops";
    }
    text.addEventListener("input", apply);
    family.addEventListener("change", apply);
    failed.addEventListener("change", apply);
    apply();
  }

  // The test report: one tbody per test (its row and its details), shown by outcome and name.
  function setUpTestFilter() {
    var table = document.getElementById("test-table");
    if (!table) { return; }
    var text = document.getElementById("test-filter");
    var boxes = document.querySelectorAll("#test-controls input[data-outcome]");
    var count = document.getElementById("test-count");
    function apply() {
      var needle = text.value.trim().toLowerCase(), shown = 0, wanted = {};
      Array.prototype.forEach.call(boxes, function (b) { wanted[b.getAttribute("data-outcome")] = b.checked; });
      var groups = table.tBodies;
      for (var i = 0; i < groups.length; i++) {
        var g = groups[i];
        var keep = wanted[g.getAttribute("data-outcome")] !== false &&
          (!needle || g.getAttribute("data-name").toLowerCase().indexOf(needle) >= 0);
        g.hidden = !keep;
        shown += keep ? 1 : 0;
      }
      count.textContent = shown + " of " + groups.length + " tests";
    }
    text.addEventListener("input", apply);
    Array.prototype.forEach.call(boxes, function (b) { b.addEventListener("change", apply); });
    apply();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  setUpFilter();
  setUpTestFilter();
}());
