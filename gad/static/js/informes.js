// The report's "Imprimir" button; kept in a file because the CSP forbids inline handlers (an onclick did nothing).
document.getElementById("imprimir").addEventListener("click", () => window.print());
