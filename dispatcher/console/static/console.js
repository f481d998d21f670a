/* The console's only script (no inline script anywhere): the live progress of a
   campaign, its report's charts, and the cancel form's confirmation. Every page works
   without it. */
(function () {
  "use strict";
  var FA = "۰۱۲۳۴۵۶۷۸۹";
  function fa(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "٬").replace(/\d/g, function (d) { return FA[d]; });
  }
  var STATES = {draft: "پیش‌نویس", scheduled: "زمان‌بندی‌شده", sending: "در حال ارسال",
                paused: "متوقف", done: "پایان‌یافته", cancelled: "لغوشده"};

  function refresh(box) {
    var url = box.getAttribute("data-progress-url");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var state = document.querySelector("[data-progress-state]");
        if (state && STATES[data.state]) {
          state.textContent = STATES[data.state];
          state.className = "state state-" + data.state;
        }
        Object.keys(data).forEach(function (channel) {
          if (channel === "state") { return; }
          var c = data[channel], total = 0;
          Object.keys(c).forEach(function (k) { total += c[k]; });
          document.querySelectorAll('[data-channel="' + channel + '"]').forEach(function (el) {
            var bar = el.querySelector("[data-bar]");
            if (bar) { bar.max = total || 1; bar.value = c.sent; }
            el.querySelectorAll("[data-count]").forEach(function (n) {
              var k = n.getAttribute("data-count");
              if (k === "total") { n.textContent = fa(total); } else if (k in c) { n.textContent = fa(c[k]); }
            });
            var k = el.getAttribute("data-count");
            if (k && k in c) { el.textContent = fa(c[k]); }
          });
        });
        box.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {});
  }

  function charts() {
    var node = document.getElementById("report-data");
    if (!node || typeof Chart === "undefined") { return; }
    var data = JSON.parse(node.textContent), report = data.report, channels = data.channels;
    var names = {email: "ایمیل", sms: "پیامک"};
    var labels = {sent: "ارسال‌شده", failed: "ناموفق", skipped: "کنار گذاشته", excluded: "حذف‌شده"};
    var colours = {sent: "#2e7d32", failed: "#c62828", skipped: "#f9a825", excluded: "#9e9e9e"};
    Chart.defaults.font.family = "Tahoma, sans-serif";
    Chart.defaults.animation = false;
    Chart.defaults.locale = "fa-IR";
    var legend = {rtl: true, textDirection: "rtl"};
    new Chart(document.getElementById("chart-outcomes"), {
      type: "bar",
      data: {labels: channels.map(function (c) { return names[c]; }),
             datasets: ["sent", "failed", "skipped", "excluded"].map(function (k) {
               return {label: labels[k], backgroundColor: colours[k],
                       data: channels.map(function (c) { return report[c][k]; })};
             })},
      options: {indexAxis: "y", responsive: true, maintainAspectRatio: false,
                scales: {x: {stacked: true, reverse: true, ticks: {precision: 0}},
                         y: {stacked: true, position: "right"}},
                plugins: {legend: legend, tooltip: {rtl: true}}}
    });
    channels.forEach(function (c) {
      var minutes = report[c].per_minute || [];
      new Chart(document.getElementById("chart-minutes-" + c), {
        type: "bar",
        data: {labels: minutes.map(function (m) { return m.minute.slice(11); }),
               datasets: ["sent", "failed", "skipped"].map(function (k) {
                 return {label: labels[k], backgroundColor: colours[k],
                         data: minutes.map(function (m) { return m[k]; })};
               })},
        options: {responsive: true, maintainAspectRatio: false,
                  scales: {x: {stacked: true, reverse: true},
                           y: {stacked: true, position: "right", ticks: {precision: 0}}},
                  plugins: {legend: legend, tooltip: {rtl: true},
                            title: {display: true, text: "ارسال در هر دقیقه: " + names[c]}}}
      });
    });
    document.documentElement.setAttribute("data-charts", "ready");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-progress-url]");
    if (box) { window.setInterval(function () { refresh(box); }, 3000); }
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
  window.addEventListener("load", charts);
})();
