// Scenario 7: an idle job (a timer that fires once a minute), as cheap as a supervised child gets.
setInterval(() => {}, 60_000);
