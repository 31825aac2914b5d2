// Swagger UI over the element #swagger-ui, reading the definition its data-url names.
// No validator badge (it would call validator.swagger.io): nothing leaves this server.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("swagger-ui");
  window.swaggerUi = SwaggerUIBundle({
    url: element.dataset.url,
    domNode: element,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
