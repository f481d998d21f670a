/* Clicks per link, one bar chart per channel (report.html includes this script). */
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  ["email", "sms"].forEach(function (c) {
    var canvas = document.getElementById("chart-clicks-" + c);
    if (!canvas || !report[c] || !report[c].clicks) { return; }
    var links = report[c].clicks;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: links.map(function (l) { return l.variant + " · " + l.url; }),
        datasets: [
          {label: "یکتا", backgroundColor: "#1565c0", data: links.map(function (l) { return l.unique; })},
          {label: "کلیک", backgroundColor: "#90caf9", data: links.map(function (l) { return l.clicks; })},
          {label: "اسکنر", backgroundColor: "#bdbdbd", data: links.map(function (l) { return l.scanner; })}
        ]
      },
      options: {indexAxis: "y", responsive: true, maintainAspectRatio: false,
                scales: {x: {reverse: true, ticks: {precision: 0}}, y: {position: "right"}},
                plugins: {legend: {rtl: true, textDirection: "rtl"}, tooltip: {rtl: true}}}
    });
  });
})();
