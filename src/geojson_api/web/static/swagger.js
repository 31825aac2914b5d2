// Swagger UI over the element #swagger-ui, reading the definition its data-url names.
// No validator badge (it would call validator.swagger.io): nothing leaves this server.
// Swagger UI 5 titles the definition with an <h1>; the page has its own heading and
// introduction (one <h1> per page), so its info block is left out.
"use strict";

const withoutInfo = () => ({ components: { InfoContainer: () => null } });

window.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("swagger-ui");
  window.swaggerUi = SwaggerUIBundle({
    url: element.dataset.url,
    domNode: element,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [withoutInfo],
  });
});
