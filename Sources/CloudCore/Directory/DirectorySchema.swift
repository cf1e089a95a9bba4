import DurableState
import GRDB

/// The directory's tables (SQLite, WAL), created and upgraded by named migrations.
///
/// Companies own projects, projects own sites; users, devices (gateways, with their channels as
/// callable endpoints) and ring groups belong to a site. Every callable name — a user, a ring
/// group, a device channel (`<device>-ch<n>`) — is one namespace, so a Request-URI user part
/// names exactly one thing.
enum DirectorySchema {
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE company (
                  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                CREATE TABLE project (
                  id INTEGER PRIMARY KEY, companyId INTEGER NOT NULL REFERENCES company(id) ON DELETE CASCADE,
                  name TEXT NOT NULL, UNIQUE(companyId, name));
                CREATE TABLE site (
                  id INTEGER PRIMARY KEY, projectId INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
                  name TEXT NOT NULL UNIQUE, timeZone TEXT NOT NULL DEFAULT 'UTC');
                CREATE TABLE user (
                  id INTEGER PRIMARY KEY, siteId INTEGER NOT NULL REFERENCES site(id) ON DELETE CASCADE,
                  name TEXT NOT NULL UNIQUE, displayName TEXT,
                  ha1Md5 TEXT, ha1Sha256 TEXT);
                CREATE TABLE device (
                  id INTEGER PRIMARY KEY, siteId INTEGER NOT NULL REFERENCES site(id) ON DELETE CASCADE,
                  name TEXT NOT NULL UNIQUE, claimedAt DOUBLE, certificateSerial TEXT);
                CREATE TABLE channel (
                  deviceId INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,
                  number INTEGER NOT NULL CHECK (number BETWEEN 1 AND 14), label TEXT,
                  PRIMARY KEY (deviceId, number));
                CREATE TABLE ringGroup (
                  id INTEGER PRIMARY KEY, siteId INTEGER NOT NULL REFERENCES site(id) ON DELETE CASCADE,
                  name TEXT NOT NULL UNIQUE, ringSeconds INTEGER NOT NULL DEFAULT 30);
                CREATE TABLE ringGroupMember (
                  groupId INTEGER NOT NULL REFERENCES ringGroup(id) ON DELETE CASCADE,
                  position INTEGER NOT NULL, member TEXT NOT NULL,
                  PRIMARY KEY (groupId, position));
                CREATE TABLE forwardingRule (
                  userId INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
                  position INTEGER NOT NULL, weekdays TEXT NOT NULL DEFAULT '',
                  dateFrom TEXT, dateTo TEXT, timeStart INTEGER, timeEnd INTEGER,
                  timeZone TEXT NOT NULL, targetKind TEXT NOT NULL, targetValue TEXT NOT NULL,
                  PRIMARY KEY (userId, position));
                CREATE TABLE claimingCode (
                  codeHash TEXT PRIMARY KEY, deviceId INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,
                  createdAt DOUBLE NOT NULL, expiresAt DOUBLE NOT NULL, usedAt DOUBLE, usedBy TEXT);
                CREATE TABLE registration (
                  addressOfRecord TEXT NOT NULL, contact TEXT NOT NULL,
                  instance TEXT, regId INTEGER, expiresAt DOUBLE NOT NULL,
                  callId TEXT NOT NULL, cseq INTEGER NOT NULL,
                  transport TEXT NOT NULL, remote TEXT NOT NULL, localAddress TEXT NOT NULL, principal TEXT NOT NULL,
                  PRIMARY KEY (addressOfRecord, contact));
                CREATE TABLE callRecord (
                  id INTEGER PRIMARY KEY, callId TEXT NOT NULL, caller TEXT NOT NULL, callee TEXT NOT NULL,
                  target TEXT NOT NULL, channel TEXT, answeredBy TEXT,
                  startedAt DOUBLE NOT NULL, answeredAt DOUBLE, endedAt DOUBLE NOT NULL,
                  durationSeconds DOUBLE NOT NULL, status TEXT NOT NULL, reason TEXT);
                CREATE INDEX callRecord_startedAt ON callRecord(startedAt);
                """)
        }
        // Who may call which channel (issue 17): a site's channel policy and its grants.
        migrator.registerMigration("v2-call-policy") { db in
            try db.execute(sql: """
                ALTER TABLE site ADD COLUMN channelPolicy TEXT NOT NULL DEFAULT 'company';
                CREATE TABLE channelGrant (
                  siteId INTEGER NOT NULL REFERENCES site(id) ON DELETE CASCADE,
                  caller TEXT NOT NULL, channel TEXT NOT NULL,
                  PRIMARY KEY (siteId, caller, channel));
                CREATE TRIGGER user_deleted_loses_grants AFTER DELETE ON user BEGIN DELETE FROM channelGrant WHERE caller = OLD.name; END;
                CREATE TRIGGER ringGroup_deleted_loses_grants AFTER DELETE ON ringGroup BEGIN DELETE FROM channelGrant WHERE caller = OLD.name; END;
                CREATE TRIGGER device_deleted_loses_grants AFTER DELETE ON device BEGIN
                  DELETE FROM channelGrant WHERE caller = OLD.name OR channel = OLD.name OR channel LIKE OLD.name || '-ch%';
                END;
                """)
        }
        // Device certificates pinned and revoked (issue 17): the current certificate's serial and
        // end; a claim is idempotent for the key of its CSR; serials of certificates that no longer
        // count (device deleted or re-claimed, certificate renewed) until they expire. A trigger
        // revokes on every delete, cascades included.
        migrator.registerMigration("v3-device-certificates") { db in
            try db.execute(sql: """
                ALTER TABLE device ADD COLUMN certificateNotAfter DOUBLE;
                ALTER TABLE device ADD COLUMN certificatePEM TEXT;
                ALTER TABLE device ADD COLUMN previousSerial TEXT;
                ALTER TABLE device ADD COLUMN renewalKeyHash TEXT;
                ALTER TABLE device ADD COLUMN siteKey TEXT;
                ALTER TABLE claimingCode ADD COLUMN csrKeyHash TEXT;
                ALTER TABLE claimingCode ADD COLUMN certificate TEXT;
                CREATE TABLE revokedCertificate (
                  serial TEXT PRIMARY KEY, device TEXT NOT NULL, notAfter DOUBLE NOT NULL, revokedAt DOUBLE NOT NULL, why TEXT NOT NULL,
                  site TEXT);
                CREATE INDEX revokedCertificate_notAfter ON revokedCertificate(notAfter);
                CREATE TRIGGER device_deleted_revokes BEFORE DELETE ON device
                  WHEN OLD.certificateSerial IS NOT NULL BEGIN
                    INSERT OR IGNORE INTO revokedCertificate (serial, device, notAfter, revokedAt, why, site)
                    VALUES (OLD.certificateSerial, OLD.name,
                      coalesce(OLD.certificateNotAfter, CAST(strftime('%s', 'now') AS REAL) + 3650 * 86400), CAST(strftime('%s', 'now') AS REAL),
                      'device deleted', OLD.siteKey);
                  END;
                """)
        }
        // Issue 18: call records written when routing starts (no end yet), each with the core's
        // own key (`ref`) for its later writes; summaries of records that waited too long for the
        // disk; the heartbeat (when the core was last known alive).
        migrator.registerMigration("v4-durable-history") { db in
            try db.execute(sql: """
                CREATE TABLE callRecord_v4 (
                  id INTEGER PRIMARY KEY, ref TEXT UNIQUE, callId TEXT NOT NULL, caller TEXT NOT NULL, callee TEXT NOT NULL,
                  target TEXT NOT NULL, channel TEXT, answeredBy TEXT,
                  startedAt DOUBLE NOT NULL, answeredAt DOUBLE, endedAt DOUBLE,
                  durationSeconds DOUBLE NOT NULL DEFAULT 0, status TEXT NOT NULL, reason TEXT);
                INSERT INTO callRecord_v4 (id, callId, caller, callee, target, channel, answeredBy, startedAt, answeredAt, endedAt, durationSeconds, status, reason)
                  SELECT id, callId, caller, callee, target, channel, answeredBy, startedAt, answeredAt, endedAt, durationSeconds, status, reason FROM callRecord;
                DROP TABLE callRecord;
                ALTER TABLE callRecord_v4 RENAME TO callRecord;
                CREATE INDEX callRecord_startedAt ON callRecord(startedAt);
                """)
            try db.execute(sql: RecordSummary.createTable)
            try db.execute(sql: Heartbeat.createTable)
        }
        return migrator
    }
}
