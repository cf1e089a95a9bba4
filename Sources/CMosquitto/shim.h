// libmosquitto (Debian libmosquitto-dev): the MQTT client library of the status topics.
#include <mosquitto.h>
