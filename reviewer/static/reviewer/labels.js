// Label confirmation page: hovering or focusing a condition row highlights its evidence
// sentence in the report and scrolls it into view; changed rows are marked as edits.
(function () {
  "use strict";
  const report = document.getElementById("report");
  if (!report) return;
  const marksFor = (key) => report.querySelectorAll(`mark[data-conditions~="${key}"]`);
  document.querySelectorAll("tr[data-condition]").forEach((row) => {
    const key = row.dataset.condition;
    const on = () => {
      const marks = marksFor(key);
      marks.forEach((m) => m.classList.add("focus"));
      if (marks.length) marks[0].scrollIntoView({ block: "nearest", behavior: "smooth" });
    };
    const off = () => marksFor(key).forEach((m) => m.classList.remove("focus"));
    row.addEventListener("mouseenter", on);
    row.addEventListener("mouseleave", off);
    row.addEventListener("focusin", on);
    row.addEventListener("focusout", off);
    const extracted = row.querySelector(".lab");
    row.querySelectorAll("input[type=radio]").forEach((input) => {
      input.addEventListener("change", () => {
        const value = { "1": "lab-1", "0": "lab-0", "-1": "lab--1" }[input.value];
        row.classList.toggle("changed", !(extracted && extracted.classList.contains(value)));
      });
    });
  });
})();
