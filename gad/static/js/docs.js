// Boots the vendored Swagger UI on /api/v1/docs; kept in a file because the CSP forbids inline scripts.
const root = document.getElementById("swagger-ui");
window.SwaggerUIBundle({ url: root.dataset.specUrl, domNode: root, deepLinking: true });
