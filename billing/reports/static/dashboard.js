// Draws the dashboard's charts from the figures the server embedded in #chart-data.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  // Stripe's zero-decimal currencies; every other one we take has two decimals.
  var zeroDecimal = { jpy: true, krw: true };

  function major(amount, currency) {
    return zeroDecimal[currency] ? amount : amount / 100;
  }

  function seriesByCurrency(rows) {
    var currencies = Array.from(new Set(rows.map(function (r) { return r.currency; }))).sort();
    return currencies.map(function (currency, index) {
      var byMonth = {};
      rows.forEach(function (r) { if (r.currency === currency) byMonth[r.period] = r.amount; });
      return {
        label: currency.toUpperCase(),
        data: data.months.map(function (m) {
          return byMonth[m] === undefined ? 0 : major(byMonth[m], currency);
        }),
        borderColor: palette[index % palette.length],
        backgroundColor: palette[index % palette.length],
      };
    });
  }

  window.dashboardCharts = [];
  function draw(id, config) {
    window.dashboardCharts.push(new Chart(document.getElementById(id), config));
  }
  var labels = data.months.map(function (m) { return m.slice(0, 7); });
  draw("mrr-chart", {
    type: "line",
    data: { labels: labels, datasets: seriesByCurrency(data.mrr) },
    options: { animation: false, plugins: { title: { display: true, text: "MRR at month end" } } },
  });
  draw("revenue-chart", {
    type: "bar",
    data: { labels: labels, datasets: seriesByCurrency(data.net) },
    options: { animation: false, plugins: { title: { display: true, text: "Net revenue" } } },
  });
  draw("recovery-chart", {
    type: "bar",
    data: {
      labels: ["Failed", "Recovered", "Lost", "Still retrying"],
      datasets: data.recovery.map(function (r, index) {
        return {
          label: r.currency.toUpperCase(),
          data: [r.failed, r.recovered, r.lost, r.still_retrying],
          backgroundColor: palette[index % palette.length],
        };
      }),
    },
    options: { animation: false, plugins: { title: { display: true, text: "Recovery funnel" } } },
  });
})();
