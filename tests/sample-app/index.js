// The sample app of the tinyserv walkthrough: one page, one config var.
const express = require("express");

const app = express();
const port = process.env.PORT || 5000;

app.get("/", (req, res) => {
  res.type("text/plain").send(`foo is ${process.env.foo}\n`);
});

app.listen(port, () => {
  console.log(`listening on port ${port}`);
});
