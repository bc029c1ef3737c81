// Runs once, when the MongoDB volume is first initialised (as the root user of MONGO_USER / MONGO_PASSWORD):
// creates the application user crysloop's workers connect as, with readWrite on the crysloop database only.
const dbName = process.env.CRYSLOOP_DB_NAME || "crysloop";
const user = process.env.MONGO_APP_USER;
const password = process.env.MONGO_APP_PASSWORD;
if (!user || !password) {
  throw new Error("MONGO_APP_USER and MONGO_APP_PASSWORD must be set (see .env.example)");
}
db.getSiblingDB(dbName).createUser({ user: user, pwd: password, roles: [{ role: "readWrite", db: dbName }] });
